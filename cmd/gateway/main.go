// Command gateway runs the integration gateway (serve) and the tools integration engineers use
// on mapping files (check, map).
//
//	gateway serve --config examples/gateway.yaml [--addr HOST:PORT] [--data DIR]
//	gateway check --config FILE
//	gateway map   --config FILE --format NAME [FILE|-]
//	gateway replay --config FILE (--request ID | --status Failed|Invalid [--since T] [--format F])
//
// Every command takes --log-level debug|info|warn|error and --log-format text|json.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "gateway:", err)
		}
		os.Exit(1)
	}
}

// errReported means the command already printed its problems; only the exit code is left.
var errReported = errors.New("problems reported")

const usage = `usage:
  gateway serve --config FILE [--addr HOST:PORT] [--data DIR]   run the gateway
  gateway check --config FILE                                   check config and mappings, run mapping tests
  gateway map --config FILE --format NAME [FILE|-]              dry-run a record or envelope through a mapping
  gateway replay --config FILE (--request ID | --status Failed|Invalid [--since T] [--format F])
                                                                run Failed/Invalid messages again

every command also takes --log-level debug|info|warn|error and --log-format text|json (logs go to stderr)
`

// run is the whole program; tests call it directly. It returns when the command is done or,
// for serve, when ctx is cancelled and shutdown has finished.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], getenv, stderr)
	case "check":
		err = check(args[1:], getenv, stdout, stderr)
	case "map":
		err = mapCmd(args[1:], getenv, stdin, stdout, stderr)
	case "replay":
		err = replayCmd(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprint(stderr, usage)
		err = fmt.Errorf("unknown command %q", args[0])
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // `gateway CMD --help`: the flag set has printed the command's flags
	}
	return err
}
