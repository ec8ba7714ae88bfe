package mappings

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Timestamps are limited to the years RFC 3339 can write.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// toTime converts what partners send as a timestamp: a string (see parseTimestamp; without an
// offset it is a wall clock time in loc), unix epoch seconds as a number, or a time.Time (from
// expr's now() or date()).
func toTime(v any, loc *time.Location) (time.Time, error) {
	var t time.Time
	switch x := v.(type) {
	case string:
		var err error
		if t, err = parseTimestamp(x, loc); err != nil {
			return time.Time{}, err
		}
	case time.Time:
		t = x
	default:
		f, ok := toFloat(v)
		if !ok {
			return time.Time{}, fmt.Errorf("cannot parse %s as a timestamp", describe(v))
		}
		if math.IsNaN(f) || f < float64(minTime.Unix()) || f > float64(maxTime.Unix()) {
			return time.Time{}, fmt.Errorf("cannot parse %s as a timestamp: epoch seconds out of range", describe(v))
		}
		switch i := v.(type) { // integers are exact, no float rounding
		case int:
			t = time.Unix(int64(i), 0)
		case int64:
			t = time.Unix(i, 0)
		}
		if !t.IsZero() {
			break
		}
		// A float64 carries about 0.2 µs of precision at today's epoch values, so the fraction
		// is rounded to microseconds: 1589854500.123 becomes .123, not .122999907.
		sec := math.Floor(f)
		micros := math.Round((f - sec) * 1e6)
		t = time.Unix(int64(sec), int64(micros)*1e3)
	}
	return inRange(t, v)
}

// inRange returns t if RFC 3339 can write it, an error naming the value v otherwise.
func inRange(t time.Time, v any) (time.Time, error) {
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, fmt.Errorf("cannot parse %s as a timestamp: year out of range 1-9999", describe(v))
	}
	return t, nil
}

// parseTimestamp parses an RFC 3339 timestamp and the variants partners send:
//
//	2020-05-18T21:15:00Z             2020-05-18T21:15:00.2519514Z (up to 9 fraction digits)
//	2020-05-18T21:15:00-05:00        2020-05-18T21:15:00-5:00 (one-digit offset hour)
//	2020-05-18T21:15:00-0500         2020-05-18T21:15:00-05
//	2020-05-18 21:15:00              (a space for T; no offset: a wall clock time in loc)
//	2020-05-18T21:15                 (no seconds)
//	2020-05-18                       (midnight in loc)
//
// A lower-case t or z, a comma before the fraction, a space before the offset and the zone
// names UTC and GMT are accepted too.
func parseTimestamp(s string, loc *time.Location) (time.Time, error) {
	bad := func(detail string) (time.Time, error) {
		if detail == "" {
			return time.Time{}, fmt.Errorf("cannot parse %s as a timestamp", describe(s))
		}
		return time.Time{}, fmt.Errorf("cannot parse %s as a timestamp: %s", describe(s), detail)
	}
	p := scanner{s: strings.TrimSpace(s)}
	year, ok1 := p.number(4, 4)
	ok2 := p.eat('-')
	month, ok3 := p.number(2, 2)
	ok4 := p.eat('-')
	day, ok5 := p.number(2, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return bad("")
	}
	var hour, minute, sec, nsec, offset int
	zoned := false // an offset or zone name was given
	if !p.done() {
		if !p.eat('T') && !p.eat('t') && !p.eat(' ') {
			return bad("")
		}
		var ok bool
		if hour, ok = p.number(1, 2); !ok || !p.eat(':') {
			return bad("")
		}
		if minute, ok = p.number(2, 2); !ok {
			return bad("")
		}
		if p.eat(':') {
			if sec, ok = p.number(2, 2); !ok {
				return bad("")
			}
			if p.eat('.') || p.eat(',') {
				start := p.i
				frac, ok := p.number(1, 9)
				if !ok {
					return bad("")
				}
				if _, more := p.number(1, 1); more {
					return bad("more than 9 fraction digits")
				}
				for n := p.i - start; n < 9; n++ {
					frac *= 10
				}
				nsec = frac
			}
		}
		if p.eat(' ') && p.done() {
			return bad("")
		}
		switch {
		case p.done():
		case p.eat('Z'), p.eat('z'), p.eatString("UTC"), p.eatString("GMT"):
			zoned = true
		case p.peek() == '+' || p.peek() == '-':
			zoned = true
			sign := 1
			if p.eat('-') {
				sign = -1
			} else {
				p.eat('+')
			}
			oh, ok := p.number(1, 2)
			if !ok {
				return bad("")
			}
			om := 0
			if p.eat(':') {
				if om, ok = p.number(2, 2); !ok {
					return bad("")
				}
			} else if !p.done() {
				if om, ok = p.number(2, 2); !ok {
					return bad("")
				}
			}
			if oh > 18 || om > 59 {
				return bad("offset out of range")
			}
			offset = sign * (oh*3600 + om*60)
		default:
			return bad("")
		}
	}
	if !p.done() {
		return bad("")
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
		return wallClock(year, month, day, hour, minute, sec, nsec, loc), nil
	}
	// The wall clock minus the offset is UTC; no time.Location is needed (FixedZone allocates).
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), nil
}

func daysIn(month, year int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// scanner reads a string left to right for the hand-written parsers in this file.
type scanner struct {
	s string
	i int
}

func (p *scanner) done() bool { return p.i >= len(p.s) }

func (p *scanner) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}

func (p *scanner) eat(c byte) bool {
	if p.peek() == c && !p.done() {
		p.i++
		return true
	}
	return false
}

func (p *scanner) eatString(s string) bool {
	if strings.HasPrefix(p.s[p.i:], s) {
		p.i += len(s)
		return true
	}
	return false
}

// number reads between min and max decimal digits.
func (p *scanner) number(min, max int) (int, bool) {
	n, start := 0, p.i
	for p.i-start < max && !p.done() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		n = n*10 + int(p.s[p.i]-'0')
		p.i++
	}
	if p.i-start < min {
		p.i = start
		return 0, false
	}
	return n, true
}

// decimal reads digits with an optional fraction ("25", "0.5", "1,5") and returns them with
// a '.' for the decimal mark.
func (p *scanner) decimal() (string, bool) {
	start := p.i
	for !p.done() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	whole := p.s[start:p.i]
	if p.eat('.') || p.eat(',') {
		fstart := p.i
		for !p.done() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		frac := p.s[fstart:p.i]
		if whole == "" && frac == "" {
			return "", false
		}
		return whole + "." + frac, true
	}
	return whole, whole != ""
}

// errNoFixedLength reports a duration in years or months, which have no fixed length.
var errNoFixedLength = errors.New("years and months have no fixed length in seconds")

// parseISODuration converts an ISO-8601 duration to seconds: P[nW][nD][T[nH][nM][nS]], with a
// fraction on any component (PT0.5S, PT1,5H) and an optional sign. A day is 86400 seconds and a
// week 7 days; years and months are errors because their length varies.
func parseISODuration(s string) (float64, error) {
	bad := func() (float64, error) {
		return 0, fmt.Errorf("cannot parse %s as an ISO-8601 duration", describe(s))
	}
	p := scanner{s: strings.TrimSpace(s)}
	sign := 1.0
	if p.eat('-') {
		sign = -1
	} else {
		p.eat('+')
	}
	if !p.eat('P') && !p.eat('p') {
		return bad()
	}
	type unit struct {
		letter  byte
		seconds float64
	}
	dateUnits := []unit{{'Y', 0}, {'M', 0}, {'W', 7 * 86400}, {'D', 86400}}
	timeUnits := []unit{{'H', 3600}, {'M', 60}, {'S', 1}}
	var total float64
	components, inTime, timeComponents, next := 0, false, 0, 0
	for !p.done() {
		if p.eat('T') || p.eat('t') {
			if inTime {
				return bad()
			}
			inTime, next = true, 0
			continue
		}
		num, ok := p.decimal()
		if !ok || p.done() {
			return bad()
		}
		letter := p.s[p.i] &^ 0x20 // upper case
		p.i++
		units := dateUnits
		if inTime {
			units = timeUnits
		}
		found := false
		for ; next < len(units); next++ {
			if units[next].letter == letter {
				found = true
				break
			}
		}
		if !found { // unknown unit, or units out of order or repeated
			return bad()
		}
		u := units[next]
		next++
		if u.seconds == 0 {
			return 0, fmt.Errorf("cannot convert %s to seconds: %w", describe(s), errNoFixedLength)
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return bad()
		}
		total += f * u.seconds
		components++
		if inTime {
			timeComponents++
		}
	}
	if components == 0 || (inTime && timeComponents == 0) || math.IsInf(total, 0) {
		return bad()
	}
	return sign * total, nil
}

// parsePlainNumber parses a number written as in JSON, also allowing surrounding white space,
// a leading '+' and a leading or trailing '.' ("5.", ".5"); no hex, no underscores, no Inf or
// NaN, no grouping. A string that a thousands grouping could have written ("1.299", "12.500":
// one to three digits, not starting with 0, a dot and three digits) is refused as ambiguous:
// the caller must say which decimal mark the partner uses.
func parsePlainNumber(str string) (float64, error) {
	s := strings.TrimSpace(str)
	f, ok := parseDecimal(s)
	switch {
	case ok && ambiguousNumber.MatchString(s):
		return 0, fmt.Errorf("%s is ambiguous (a decimal point or a thousands separator?): give the decimal mark, number(x, \".\") or number(x, \",\")", describe(str))
	case ok:
		return f, nil
	case strings.ContainsAny(s, ", '\u00a0\u202f") && s != "":
		return 0, fmt.Errorf("cannot parse %s as a number: for a decimal comma or grouped digits give the decimal mark, number(x, \",\") or number(x, \".\")", describe(str))
	}
	return 0, fmt.Errorf("cannot parse %s as a number", describe(str))
}

var ambiguousNumber = regexp.MustCompile(`^[-+]?[1-9][0-9]{0,2}\.[0-9]{3}$`)

// parseDecimal parses a decimal number as written in JSON, also allowing a leading '+', a
// leading or trailing '.' ("5.", ".5"); no hex, no underscores, no Inf or NaN.
func parseDecimal(s string) (float64, bool) {
	p := scanner{s: s}
	if !p.eat('-') {
		p.eat('+')
	}
	start := p.i
	digits := 0
	for !p.done() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
		digits++
	}
	if p.eat('.') {
		for !p.done() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			digits++
		}
	}
	if digits == 0 || p.i == start {
		return 0, false
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('-') {
			p.eat('+')
		}
		if _, ok := p.number(1, 4); !ok {
			return 0, false
		}
	}
	if !p.done() {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// groupSeparators are the characters that may group thousands for each decimal mark: the
// other mark, a space, a no-break space (U+00A0) or a narrow no-break space (U+202F), and
// for a decimal point also an apostrophe (Swiss 1'299.50).
var groupSeparators = map[string]string{
	",": ". \u00a0\u202f",
	".": ", \u00a0\u202f'",
}

// checkMark accepts the decimal marks number understands.
func checkMark(mark string) error {
	if _, ok := groupSeparators[mark]; !ok {
		return fmt.Errorf("decimal mark %s is not \",\" or \".\"", describe(mark))
	}
	return nil
}

// parseLocaleNumber parses a number written with decimal mark mark ("," or "."): an optional
// sign, digits that may be grouped by thousands with one separator of groupSeparators used
// throughout (1 to 3 digits, then groups of exactly 3), and an optional fraction after the
// mark. Nothing else is accepted, so no string is read as a number other than the one written.
func parseLocaleNumber(str, mark string) (float64, error) {
	if err := checkMark(mark); err != nil {
		return 0, err
	}
	bad := func(why string) (float64, error) {
		return 0, fmt.Errorf("cannot parse %s as a number with decimal mark %q: %s", describe(str), mark, why)
	}
	s := strings.TrimSpace(str)
	var b strings.Builder
	if s != "" && (s[0] == '-' || s[0] == '+') {
		b.WriteByte(s[0])
		s = s[1:]
	}
	whole, frac, hasFrac := strings.Cut(s, mark)
	if hasFrac && (frac == "" || strings.TrimLeft(frac, "0123456789") != "") {
		return bad("the fraction must be digits only")
	}
	var sep rune // the group separator in use, 0 until one is seen
	group, groups := 0, 0
	for _, r := range whole {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
			group++
		case strings.ContainsRune(groupSeparators[mark], r):
			if sep != 0 && r != sep {
				return bad(fmt.Sprintf("digits grouped by both %q and %q", sep, r))
			}
			if group == 0 || group > 3 || (groups > 0 && group != 3) {
				return bad("digits must be grouped by three")
			}
			sep, group, groups = r, 0, groups+1
		default:
			return bad(fmt.Sprintf("unexpected %q", r))
		}
	}
	switch {
	case whole == "":
		return bad("no digits before the decimal mark")
	case group == 0:
		return bad("a group separator must be followed by three digits")
	case groups > 0 && group != 3:
		return bad("digits must be grouped by three")
	}
	if hasFrac {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	f, err := strconv.ParseFloat(b.String(), 64)
	if err != nil || math.IsInf(f, 0) {
		return bad("out of range")
	}
	return f, nil
}
