package mappings

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultWatchInterval is how often a Watcher looks at its folder when Interval is zero.
const DefaultWatchInterval = 500 * time.Millisecond

// Watcher reloads the mappings of a folder while the gateway runs. It polls the folder (no
// file-system notification API: polling works the same on every OS, in containers and on
// network and ConfigMap mounts) and fingerprints the mapping and schema files in it and in
// its subfolders: names, sizes, modification times and content hashes. Files whose name
// starts with "." and files other than .yaml, .yml and .json (editor swap and backup files)
// are ignored.
//
// A change is acted on once the folder has looked the same for two polls in a row, so a file
// caught half-written is not reported. Then the folder is loaded with Load (and Check, if
// set):
//   - a valid set whose versions differ from the one serving is handed to OnChange and its
//     versions are logged ("mappings reloaded", format=version pairs); the test cases of the
//     changed mappings are run, and each failure is logged as a warning (it does not refuse
//     the change: `gateway check` is the gate for that);
//   - a set with problems is refused: every problem is logged as file:line:col: message, and
//     OnChange is not called, so the previous set keeps serving. The same broken folder is
//     not reported again; the next change is.
//
// The fields must be set before Start and not changed after it.
type Watcher struct {
	Dir   string   // the mappings folder, as given to Load
	Sinks []string // the sink names routes may use, as given to Load
	// Interval between polls; DefaultWatchInterval when zero.
	Interval time.Duration
	// Check, if set, vets a set that loaded without problems, e.g. that every format assigned
	// to a client still has a mapping. An error refuses the set; each line of its message is
	// logged as a problem.
	Check func(*Set) error
	// OnChange receives each valid new set. It is called from the watcher's goroutine, one
	// call at a time, and should only swap the set in (e.g. atomic.Pointer.Store): records
	// already being processed keep the set they read.
	OnChange func(*Set)
	// OnRefuse, if set, is told of each refused change (its load or Check error), from the
	// watcher's goroutine, e.g. to count it.
	OnRefuse func(error)
	// Log receives the reload and refusal messages; slog.Default() when nil.
	Log *slog.Logger

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// Start begins watching in a new goroutine. current is the set being served: a reload that
// yields the same versions is not handed on. Start must be called once.
func (w *Watcher) Start(current *Set) {
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	go w.run(current)
}

// Stop ends the watching and waits for an OnChange in progress to return. It may be called
// more than once, and before Start.
func (w *Watcher) Stop() {
	w.stopOnce.Do(func() {
		if w.stop == nil {
			return
		}
		close(w.stop)
		<-w.done
	})
}

func (w *Watcher) run(current *Set) {
	defer close(w.done)
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	log := w.Log
	if log == nil {
		log = slog.Default()
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()

	// handled is the fingerprint last loaded; pending, one seen once and waiting to be seen
	// again unchanged. The first stable fingerprint is always loaded, which also catches an
	// edit made between the initial Load and Start.
	var handled, pending string
	refused := false
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		fp := fingerprint(w.Dir)
		switch {
		case fp == handled:
			pending = ""
			continue
		case fp != pending:
			pending = fp
			continue
		}
		handled, pending = fp, ""

		set, err := Load(w.Dir, w.Sinks)
		if err == nil && w.Check != nil {
			err = w.Check(set)
		}
		if err != nil {
			refused = true
			if w.OnRefuse != nil {
				w.OnRefuse(err)
			}
			log.Error("mapping change refused; the previous mappings keep serving",
				"dir", w.Dir, "serving", versionList(current))
			for _, p := range problemLines(err) {
				log.Error("mapping problem", "problem", p)
			}
			continue
		}
		if sameVersions(set, current) && !refused {
			continue
		}
		refused = false
		w.OnChange(set)
		log.Info("mappings reloaded", "dir", w.Dir, "versions", versionList(set), "changed", changedFormats(current, set))
		warnFailingTests(log, current, set)
		current = set
	}
}

// warnFailingTests runs the test cases of the mappings that changed and logs each failure.
// A failing test does not refuse a change: the mapping is valid, and it is the author's call
// whether the code or the test is behind; `gateway check` fails on it before a deploy.
func warnFailingTests(log *slog.Logger, old, cur *Set) {
	for _, f := range cur.formats {
		m := cur.byFormat[f]
		if o, ok := old.byFormat[f]; ok && o.Version == m.Version {
			continue
		}
		for _, r := range m.RunTests() {
			if !r.Passed {
				log.Warn("mapping test fails", "file", m.File, "version", m.Version, "test", r.Name, "diff", r.Message)
			}
		}
	}
}

// problemLines lists the problems of a failed load, one "file:line:col: message" each.
func problemLines(err error) []string {
	var ps Problems
	if errors.As(err, &ps) {
		sorted := slices.Clone(ps)
		sorted.sort()
		lines := make([]string, len(sorted))
		for i, p := range sorted {
			lines[i] = p.String()
		}
		return lines
	}
	return strings.Split(err.Error(), "\n")
}

// Versions returns the Version of every mapping of the set, by format.
func (s *Set) Versions() map[string]string {
	out := make(map[string]string, len(s.byFormat))
	for f, m := range s.byFormat {
		out[f] = m.Version
	}
	return out
}

// versionList renders a set's versions as "format=version ..." in format order.
func versionList(s *Set) string {
	parts := make([]string, 0, len(s.formats))
	for _, f := range s.formats {
		parts = append(parts, f+"="+s.byFormat[f].Version)
	}
	return strings.Join(parts, " ")
}

func sameVersions(a, b *Set) bool {
	if len(a.formats) != len(b.formats) {
		return false
	}
	for f, m := range a.byFormat {
		if o, ok := b.byFormat[f]; !ok || o.Version != m.Version {
			return false
		}
	}
	return true
}

// changedFormats lists the formats added, removed or given a new version, e.g.
// "activity -payments +orders".
func changedFormats(old, cur *Set) string {
	var parts []string
	for _, f := range cur.formats {
		if o, ok := old.byFormat[f]; !ok {
			parts = append(parts, "+"+f)
		} else if o.Version != cur.byFormat[f].Version {
			parts = append(parts, f)
		}
	}
	for _, f := range old.formats {
		if _, ok := cur.byFormat[f]; !ok {
			parts = append(parts, "-"+f)
		}
	}
	return strings.Join(parts, " ")
}

// fingerprint hashes the name, size, modification time and content of every watched file
// under dir. A folder that cannot be read has a fingerprint naming the error, so that it is
// loaded (and its problem logged) once.
func fingerprint(dir string) string {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if path != dir && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(name)) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		// Stat and read follow symbolic links, as Load does (ConfigMap mounts are links).
		info, err := os.Stat(path)
		if err != nil || info.IsDir() {
			fmt.Fprintf(h, "%s\x00unreadable\x00", path)
			return nil
		}
		content, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(h, "%s\x00unreadable\x00", path)
			return nil
		}
		sum := sha256.Sum256(content)
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%x\x00", path, info.Size(), info.ModTime().UnixNano(), sum)
		return nil
	})
	if err != nil {
		return "error: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}
