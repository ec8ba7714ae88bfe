package main

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/opengw/gateway/internal/metrics/metricstest"
)

// TestTuneGC: a configured limit is applied with GOGC 400; none keeps Go's defaults; GOMEMLIMIT
// and GOGC in the environment are left as the runtime applied them.
func TestTuneGC(t *testing.T) {
	limit0, percent0 := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetMemoryLimit(limit0); debug.SetGCPercent(percent0) })
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cases := []struct {
		name        string
		limit       int64
		getenv      func(string) string
		wantLimit   int64
		wantPercent int
		wantString  string
	}{
		{"configured", 64 << 20, env(), 64 << 20, 400, "64 MiB, GOGC 400"},
		{"none", -1, env(), math.MaxInt64, 100, "none, GOGC 100"},
		// The runtime applied GOMEMLIMIT (here: the 50 MiB set below) before main: kept, GOGC raised.
		{"GOMEMLIMIT set", 64 << 20, env("GOMEMLIMIT", "50MiB"), 50 << 20, 400, "50 MiB, GOGC 400"},
		// The runtime applied GOGC (here: the 100 set below): kept, the limit applied.
		{"GOGC set", 64 << 20, env("GOGC", "100"), 64 << 20, 100, "64 MiB, GOGC 100 (GOGC)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			if c.getenv("GOMEMLIMIT") != "" {
				debug.SetMemoryLimit(50 << 20)
			}
			debug.SetGCPercent(100)
			s := tuneGC(c.limit, c.getenv)
			if got := debug.SetMemoryLimit(-1); got != c.wantLimit {
				t.Errorf("memory limit = %d, want %d", got, c.wantLimit)
			}
			if got := debug.SetGCPercent(100); got != c.wantPercent {
				t.Errorf("GOGC = %d, want %d", got, c.wantPercent)
			}
			if s.String() != c.wantString {
				t.Errorf("logged %q, want %q", s, c.wantString)
			}
		})
	}
}

// TestMemoryLimitFromConfig: the real binary runs with limits.memory_limit_bytes and GOGC 400,
// as its start-up line says and its Go runtime metrics show.
func TestMemoryLimitFromConfig(t *testing.T) {
	cfgPath, _ := copyExample(t)
	editConfig(t, cfgPath, "  memory_limit_bytes: 100663296 ", "  memory_limit_bytes: 67108864 ")
	g, _ := startProcess(t, cfgPath, t.TempDir())
	page := g.metrics(t)
	if got := metricstest.Sample(page, "go_gc_gomemlimit_bytes"); got != 64<<20 {
		t.Errorf("go_gc_gomemlimit_bytes = %v, want %d", got, 64<<20)
	}
	if got := metricstest.Sample(page, "go_gc_gogc_percent"); got != 400 {
		t.Errorf("go_gc_gogc_percent = %v, want 400", got)
	}
	if !strings.Contains(g.logs.String(), `memory="64 MiB, GOGC 400"`) {
		t.Errorf("the start-up line does not tell the memory settings:\n%s", g.logs.String())
	}
}
