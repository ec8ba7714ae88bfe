// Package logging builds the gateway's loggers: one *slog.Logger made by cmd/gateway from the
// --log-level and --log-format flags and passed down, and the adapter that brings Watermill's
// logging under it.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
)

// Levels and Formats are the values --log-level and --log-format accept.
var (
	Levels  = []string{"debug", "info", "warn", "error"}
	Formats = []string{"text", "json"}
)

// New returns a logger writing to w at level (one of Levels) in format (one of Formats). Its
// error names the flag value it cannot use.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "info", "":
		lv = slog.LevelInfo
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level %q is not one of %s", level, strings.Join(Levels, ", "))
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q is not one of %s", format, strings.Join(Formats, ", "))
}

// handlerReturnedError is what Watermill's router logs for every message whose handler failed.
const handlerReturnedError = "Handler returned error"

// Watermill adapts log for Watermill's router and pub/subs. Their info lines (adding, starting
// and stopping handlers) are routine, so they are logged at debug: an operator's first line is
// the gateway's own "listening" line. The router's "Handler returned error" is logged at debug
// too: the pipeline logs each failed message itself, once, with its request id.
func Watermill(log *slog.Logger) watermill.LoggerAdapter {
	return quietAdapter{watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug,
	})}
}

type quietAdapter struct{ watermill.LoggerAdapter }

func (a quietAdapter) Error(msg string, err error, fields watermill.LogFields) {
	if msg == handlerReturnedError {
		a.LoggerAdapter.Debug(msg, fields.Add(watermill.LogFields{"error": err}))
		return
	}
	a.LoggerAdapter.Error(msg, err, fields)
}

func (a quietAdapter) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return quietAdapter{a.LoggerAdapter.With(fields)}
}
