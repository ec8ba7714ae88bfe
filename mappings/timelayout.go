package mappings

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // timezone: must work on machines without a zoneinfo database
)

// A layout describes how a partner writes a time, with the pattern letters people know from
// Java, .NET and Excel: "dd/MM/yyyy HH:mm" reads "18/05/2020 21:15". The letters are:
//
//	yyyy  year, 4 digits            MM, M  month, 2 digits or 1-2
//	dd, d day, 2 digits or 1-2      HH, H  hour 00-23, 2 digits or 1-2
//	mm    minute, 2 digits          ss     second, 2 digits
//	S...  fraction of a second, exactly as many digits as S's (up to 9)
//	XXX   a UTC offset: Z, +02:00, +0200 or +02 (also written Z, X or XX)
//
// Any other character stands for itself, T included; text in single quotes is literal
// ('at'; two single quotes stand for one). Any other letter is refused when the layout is
// read, so that a layout never means something else than it seems to: yy (which century?),
// hh and a (12-hour clock), MMM (month names) and E (day names) are not supported.
type layout struct {
	parts []layoutPart
}

// layoutPart is one element of a layout: a literal, or a field of width digits (min to max).
type layoutPart struct {
	field    byte // 'y', 'M', 'd', 'H', 'm', 's', 'S', 'X'; 0 for a literal
	min, max int  // digits
	literal  string
}

// unsupportedLetters explains the letters layouts refuse, for the error message.
var unsupportedLetters = map[byte]string{
	'h': "12-hour clock", 'a': "AM/PM", 'K': "12-hour clock", 'k': "hour 1-24",
	'E': "day names", 'G': "era", 'D': "day of year", 'w': "week of year", 'W': "week of month",
	'u': "day of week", 'L': "month names", 'z': "zone names", 'V': "zone ids", 'O': "offsets",
	'x': "offsets", 'Y': "week year", 'Q': "quarters", 'F': "day of week in month",
}

const layoutHelp = "yyyy, MM, M, dd, d, HH, H, mm, ss, S..., XXX; quote other letters: 'at'"

// parseLayout reads a layout. The error says which letter or run is wrong.
func parseLayout(src string) (*layout, error) {
	l := &layout{}
	seen := map[byte]bool{}
	for i := 0; i < len(src); {
		c := src[i]
		if c == '\'' {
			end := strings.IndexByte(src[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("layout %q: a quote is not closed", src)
			}
			lit := src[i+1 : i+1+end]
			if lit == "" {
				lit = "'"
			}
			l.parts = append(l.parts, layoutPart{literal: lit})
			i += end + 2
			continue
		}
		if !isLetter(c) || c == 'T' {
			l.parts = append(l.parts, layoutPart{literal: src[i : i+1]})
			i++
			continue
		}
		n := 1
		for i+n < len(src) && src[i+n] == c {
			n++
		}
		run := src[i : i+n]
		var p layoutPart
		switch {
		case run == "yyyy":
			p = layoutPart{field: 'y', min: 4, max: 4}
		case c == 'y':
			return nil, fmt.Errorf("layout %q: %q is not supported: write the year as yyyy (a 2-digit year has no century)", src, run)
		case run == "MM", run == "dd", run == "HH", run == "mm", run == "ss":
			p = layoutPart{field: c, min: 2, max: 2}
		case run == "M", run == "d", run == "H":
			p = layoutPart{field: c, min: 1, max: 2}
		case c == 'M' && n > 2:
			return nil, fmt.Errorf("layout %q: %q (month names) is not supported; supported: %s", src, run, layoutHelp)
		case c == 'S' && n <= 9:
			p = layoutPart{field: 'S', min: n, max: n}
		case run == "X", run == "XX", run == "XXX", run == "Z":
			p = layoutPart{field: 'X'}
		default:
			what := "unknown pattern letters"
			if why, ok := unsupportedLetters[c]; ok {
				what = why + " is not supported"
			}
			return nil, fmt.Errorf("layout %q: %q: %s; supported: %s", src, run, what, layoutHelp)
		}
		if seen[p.field] {
			return nil, fmt.Errorf("layout %q: %q appears twice", src, run)
		}
		seen[p.field] = true
		l.parts = append(l.parts, p)
		i += n
	}
	if !seen['y'] || !seen['M'] || !seen['d'] {
		return nil, fmt.Errorf("layout %q needs a year (yyyy), a month (MM or M) and a day (dd or d)", src)
	}
	if seen['m'] && !seen['H'] || seen['s'] && !seen['m'] || seen['S'] && !seen['s'] {
		return nil, fmt.Errorf("layout %q: minutes need hours, seconds minutes and fractions seconds", src)
	}
	return l, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// checkLayout reports a layout that parseLayout refuses; used when a mapping is loaded.
func checkLayout(src string) error {
	_, err := parseLayout(src)
	return err
}

// parseWithLayout reads v, a string, as written by layoutSrc. Without an offset in the
// layout the time is a wall clock time in loc.
func parseWithLayout(v any, layoutSrc string, loc *time.Location) (time.Time, error) {
	l, err := parseLayout(layoutSrc)
	if err != nil {
		return time.Time{}, err
	}
	str, ok := v.(string)
	if !ok {
		return time.Time{}, fmt.Errorf("cannot parse %s as %q: the value must be a string", describe(v), layoutSrc)
	}
	bad := func(detail string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("cannot parse %s as %q: %s", describe(str), layoutSrc, detail)
	}
	p := scanner{s: strings.TrimSpace(str)}
	var year, month, day, hour, minute, sec, nsec int
	zoned, offset := false, 0
	for _, part := range l.parts {
		if part.field == 0 {
			if !p.eatString(part.literal) {
				return bad(fmt.Sprintf("expected %q at position %d", part.literal, p.i+1))
			}
			continue
		}
		if part.field == 'X' {
			var ok bool
			if zoned, offset, ok = p.offset(); !ok {
				return bad(fmt.Sprintf("expected an offset (Z, +02:00, +0200 or +02) at position %d", p.i+1))
			}
			continue
		}
		start := p.i
		n, ok := p.number(part.min, part.max)
		if !ok {
			return bad(fmt.Sprintf("expected %s at position %d", digits(part), start+1))
		}
		switch part.field {
		case 'y':
			year = n
		case 'M':
			month = n
		case 'd':
			day = n
		case 'H':
			hour = n
		case 'm':
			minute = n
		case 's':
			sec = n
		case 'S':
			for w := part.max; w < 9; w++ {
				n *= 10
			}
			nsec = n
		}
	}
	if !p.done() {
		return bad(fmt.Sprintf("unexpected %q at position %d", p.s[p.i:], p.i+1))
	}
	switch {
	case month < 1 || month > 12:
		return bad("month out of range")
	case day < 1 || day > daysIn(month, year):
		return bad("day out of range")
	case hour > 23:
		return bad("hour out of range")
	case minute > 59:
		return bad("minute out of range")
	case sec > 59:
		return bad("second out of range")
	}
	if !zoned {
		return inRange(wallClock(year, month, day, hour, minute, sec, nsec, loc), v)
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return inRange(t.Add(-time.Duration(offset)*time.Second), v)
}

// digits describes what a numeric layout field expects, for an error message.
func digits(p layoutPart) string {
	names := map[byte]string{'y': "year", 'M': "month", 'd': "day", 'H': "hour", 'm': "minute", 's': "second", 'S': "fraction"}
	if p.min == p.max {
		return fmt.Sprintf("%d digits (%s)", p.min, names[p.field])
	}
	return fmt.Sprintf("%d to %d digits (%s)", p.min, p.max, names[p.field])
}

// offset reads a UTC offset: Z (zoned, 0), or a sign, 1-2 digit hours and optional minutes
// with or without a colon.
func (p *scanner) offset() (zoned bool, seconds int, ok bool) {
	if p.eat('Z') || p.eat('z') {
		return true, 0, true
	}
	sign := 1
	switch {
	case p.eat('-'):
		sign = -1
	case p.eat('+'):
	default:
		return false, 0, false
	}
	h, ok := p.number(2, 2)
	if !ok {
		return false, 0, false
	}
	m := 0
	if p.eat(':') {
		if m, ok = p.number(2, 2); !ok {
			return false, 0, false
		}
	} else if n, ok := p.number(2, 2); ok {
		m = n
	}
	if h > 18 || m > 59 {
		return false, 0, false
	}
	return true, sign * (h*3600 + m*60), true
}

// wallClock returns the instant a clock in loc shows as the given date and time. A time that
// a daylight-saving change skips (02:30 on the night clocks go forward) is read as if the
// clock had not changed yet, which lands after the gap (03:30); a time it repeats (02:30 on
// the night clocks go back) is the first of the two, in summer time. Go's time.Date leaves
// that choice open, so it is made here.
func wallClock(year, month, day, hour, minute, sec, nsec int, loc *time.Location) time.Time {
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if loc == time.UTC {
		return t
	}
	for _, d := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		earlier := t.Add(-d)
		if earlier.Hour() == t.Hour() && earlier.Minute() == t.Minute() && earlier.Day() == t.Day() {
			return earlier
		}
	}
	return t
}

// loadLocation returns the IANA timezone name (Europe/Copenhagen); "Local", which would
// depend on the machine, is refused.
func loadLocation(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, fmt.Errorf("%q depends on the machine; give an IANA name such as Europe/Copenhagen or UTC", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA timezone name (such as Europe/Copenhagen or UTC)", name)
	}
	return loc, nil
}
