package mappings

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Timestamps are limited to the years RFC 3339 can write.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// toTime converts what partners send as a timestamp: a string (see parseTimestamp), unix epoch
// seconds as a number, or a time.Time (from expr's now() or date()).
func toTime(v any) (time.Time, error) {
	var t time.Time
	switch x := v.(type) {
	case string:
		var err error
		if t, err = parseTimestamp(x); err != nil {
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
//	2020-05-18 21:15:00              (a space for T; no offset means UTC)
//	2020-05-18T21:15                 (no seconds)
//	2020-05-18                       (midnight UTC)
//
// A lower-case t or z, a comma before the fraction, a space before the offset and the zone
// names UTC and GMT are accepted too.
func parseTimestamp(s string) (time.Time, error) {
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
		case p.done(), p.eat('Z'), p.eat('z'), p.eatString("UTC"), p.eatString("GMT"):
		case p.peek() == '+' || p.peek() == '-':
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
