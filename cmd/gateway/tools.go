package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/pipeline"
)

// check loads the configuration and every mapping, prints each problem as file:line:col:
// message, runs every mapping's test cases, and fails if anything is wrong.
func check(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "examples/gateway.yaml", "configuration file")
	logFlags := addLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logFlags.logger(stderr)
	if err != nil {
		return err
	}
	_, set, err := loadAll(*cfgPath, getenv)
	if err != nil {
		// Every problem of the config or of every mapping file, one per line, sorted.
		msg := err.Error()
		fmt.Fprintln(stdout, msg)
		if n := strings.Count(msg, "\n") + 1; n == 1 {
			fmt.Fprintln(stdout, "1 problem; mapping tests not run")
		} else {
			fmt.Fprintf(stdout, "%d problems; mapping tests not run\n", n)
		}
		return errReported
	}
	passed, failed := 0, 0
	for _, format := range set.Formats() {
		m, _ := set.Get(format)
		log.Debug("running mapping tests", "format", format, "file", m.File, "version", m.Version)
		for _, r := range m.RunTests() {
			if r.Passed {
				passed++
				continue
			}
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %s: %s\n", m.File, r.Name, r.Message)
		}
	}
	fmt.Fprintf(stdout, "%d mappings, %d tests: %d passed, %d failed\n", len(set.Formats()), passed+failed, passed, failed)
	if failed > 0 {
		return errReported
	}
	return nil
}

// mapCmd dry-runs one record, an array of records or a whole envelope through a mapping and
// prints what each sink would receive, or why a record is invalid.
func mapCmd(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("map", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "examples/gateway.yaml", "configuration file")
	format := fs.String("format", "", "format (mapping) to use; default: the envelope's format")
	logFlags := addLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logFlags.logger(stderr)
	if err != nil {
		return err
	}
	var input []byte
	switch src := fs.Arg(0); src {
	case "", "-":
		input, err = io.ReadAll(stdin)
	default:
		input, err = os.ReadFile(src)
	}
	if err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	_, set, err := loadAll(*cfgPath, getenv)
	if err != nil {
		return err
	}
	records, envFormat, err := recordsOf(input)
	if err != nil {
		return err
	}
	name := *format
	if name == "" {
		name = envFormat
	}
	if name == "" {
		return errors.New("--format is required when the input is not an envelope")
	}
	m, ok := set.Get(name)
	if !ok {
		return fmt.Errorf("unknown format %q (known: %v)", name, set.Formats())
	}
	log.Debug("dry run", "format", name, "file", m.File, "version", m.Version, "records", len(records))
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(m.DryRun(records))
}

// recordsOf accepts an envelope, an array of records or one record.
func recordsOf(input []byte) ([][]byte, string, error) {
	if !gjson.ValidBytes(input) {
		return nil, "", errors.New("the input is not valid JSON")
	}
	root := gjson.ParseBytes(input)
	switch {
	case root.IsObject() && root.Get("payload").IsArray():
		env, err := pipeline.ParseEnvelope(input)
		if err != nil {
			return nil, "", err
		}
		return env.Records, env.Format, nil
	case root.IsArray():
		var out [][]byte
		var bad error
		root.ForEach(func(_, r gjson.Result) bool {
			if !r.IsObject() {
				bad = fmt.Errorf("element %d of the input array is not an object", len(out))
				return false
			}
			out = append(out, []byte(r.Raw))
			return true
		})
		return out, "", bad
	case root.IsObject():
		return [][]byte{input}, "", nil
	default:
		return nil, "", errors.New("the input must be a record, an array of records or an envelope")
	}
}
