package main

import (
	"flag"
	"io"
	"log/slog"
	"strings"

	"github.com/opengw/gateway/internal/logging"
)

// logFlags are --log-level and --log-format, which every command takes.
type logFlags struct{ level, format *string }

func addLogFlags(fs *flag.FlagSet) logFlags {
	return logFlags{
		level:  fs.String("log-level", "info", "log level: "+strings.Join(logging.Levels, ", ")),
		format: fs.String("log-format", "text", "log format: "+strings.Join(logging.Formats, ", ")),
	}
}

// logger builds the command's logger, writing to w (stderr).
func (f logFlags) logger(w io.Writer) (*slog.Logger, error) {
	return logging.New(w, *f.level, *f.format)
}
