// Package jsonkind checks untrusted JSON (Check: syntax and nesting depth in one pass, without
// recursion) and names JSON values for error messages ("must be an object, not the string
// \"x\""), so every part of the gateway refuses and describes bad input the same way.
package jsonkind

import (
	"fmt"

	"github.com/tidwall/gjson"
)

// Of names the kind of v: "an object", "an array", "a string", "a number", "a boolean" or
// "null".
func Of(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "an array"
	}
	switch v.Type {
	case gjson.String:
		return "a string"
	case gjson.Number:
		return "a number"
	case gjson.True, gjson.False:
		return "a boolean"
	default:
		return "null"
	}
}

// Describe is Of with the value itself for scalars: `the string "abc"`, "the number 7",
// "the boolean true". Long strings are cut at 40 characters.
func Describe(v gjson.Result) string {
	switch v.Type {
	case gjson.String:
		s := v.Str
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return fmt.Sprintf("the string %q", s)
	case gjson.Number:
		return "the number " + v.Raw
	case gjson.True, gjson.False:
		return "the boolean " + v.Raw
	}
	return Of(v)
}
