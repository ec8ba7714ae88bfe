package logging_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/opengw/gateway/internal/logging"
)

func TestNewLevelsAndFormats(t *testing.T) {
	cases := []struct {
		level, format string
		wantDebug     bool
		wantInfo      bool
		wantErr       string
	}{
		{level: "debug", format: "text", wantDebug: true, wantInfo: true},
		{level: "info", format: "json", wantInfo: true},
		{level: "warn", format: "text"},
		{level: "ERROR", format: "JSON"},
		{level: "verbose", format: "text", wantErr: `--log-level "verbose" is not one of debug, info, warn, error`},
		{level: "info", format: "xml", wantErr: `--log-format "xml" is not one of text, json`},
	}
	for _, c := range cases {
		t.Run(c.level+"/"+c.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := logging.New(&buf, c.level, c.format)
			if c.wantErr != "" {
				if err == nil || err.Error() != c.wantErr {
					t.Fatalf("err = %v, want %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("d")
			log.Info("i", "request_id", "r1")
			out := buf.String()
			if strings.Contains(out, "msg=d") || strings.Contains(out, `"msg":"d"`) {
				if !c.wantDebug {
					t.Errorf("debug line logged at level %s: %s", c.level, out)
				}
			} else if c.wantDebug {
				t.Errorf("debug line missing: %s", out)
			}
			if got := strings.Contains(out, "r1"); got != c.wantInfo {
				t.Errorf("info line present = %v: %s", got, out)
			}
			if strings.EqualFold(c.format, "json") && c.wantInfo {
				var line map[string]any
				if err := json.Unmarshal([]byte(strings.Split(strings.TrimSpace(out), "\n")[0]), &line); err != nil {
					t.Errorf("not JSON: %s", out)
				}
			}
		})
	}
}

// TestWatermillQuiet: Watermill's info chatter and the router's per-message error line are
// debug; its real errors stay errors.
func TestWatermillQuiet(t *testing.T) {
	var buf bytes.Buffer
	log, _ := logging.New(&buf, "info", "text")
	wl := logging.Watermill(log).With(watermill.LogFields{"handler": "process"})
	wl.Info("Adding handler", nil)
	wl.Error("Handler returned error", errors.New("boom"), watermill.LogFields{"message_uuid": "m1"})
	if buf.Len() != 0 {
		t.Fatalf("at info level: %s", buf.String())
	}
	wl.Error("Subscriber failed", errors.New("disk"), nil)
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "disk") || !strings.Contains(buf.String(), "handler=process") {
		t.Fatalf("real error: %s", buf.String())
	}

	buf.Reset()
	log, _ = logging.New(&buf, "debug", "text")
	logging.Watermill(log).Error("Handler returned error", errors.New("boom"), watermill.LogFields{"message_uuid": "m1"})
	if out := buf.String(); !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "boom") || !strings.Contains(out, "m1") {
		t.Fatalf("at debug level: %s", out)
	}
}
