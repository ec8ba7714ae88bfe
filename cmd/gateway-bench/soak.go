package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"
)

// soakOptions configure the soak scenario (-only soak).
type soakOptions struct {
	rate      int           // records per second offered
	batch     int           // records per push
	duration  time.Duration // how long the load lasts
	sample    time.Duration // how often size and memory are sampled
	ids       int           // distinct record ids, reused in turn (sinks upsert, so sinks.db stays bounded)
	retention string        // retention.tracking and retention.payloads to configure ("" leaves the config's)
}

// soak offers a steady load for a long time and samples what must stay flat: the gateway's
// database files (gateway.db and its WAL), the sink database, the gateway's resident memory and
// its backlog (from /metrics). Records reuse a bounded set of ids, so only the gateway's own
// data can grow; retention (when the gateway has it) is what keeps that flat.
func soak(g *gatewayProc, o soakOptions) (map[string]float64, error) {
	pushes := int(float64(o.rate) / float64(o.batch) * o.duration.Seconds())
	interval := time.Duration(float64(time.Second) * float64(o.batch) / float64(o.rate))
	start := time.Now()
	due := func(i int) time.Time { return start.Add(time.Duration(i) * interval) }
	var sent atomic.Int64
	var nextID atomic.Int64
	ids := make([]string, max(o.ids, 1))
	for i := range ids {
		ids[i] = randomUUID()
	}
	body := func(int) []byte {
		first := nextID.Add(int64(o.batch)) - int64(o.batch)
		return soakEnvelope(first, o.batch, ids)
	}

	done := make(chan struct{})
	samples := make(chan []soakSample, 1)
	go func() {
		var out []soakSample
		tick := time.NewTicker(o.sample)
		defer tick.Stop()
		fmt.Fprintf(os.Stderr, "%8s %10s %10s %12s %10s %10s %8s %9s\n", "t", "records", "finished", "gateway_mb", "wal_mb", "sinks_mb", "rss_mb", "backlog")
		for {
			select {
			case <-done:
				samples <- out
				return
			case <-tick.C:
			}
			s := g.sampleSoak(time.Since(start), sent.Load()*int64(o.batch))
			out = append(out, s)
			fmt.Fprintf(os.Stderr, "%8s %10d %10.0f %12.1f %10.1f %10.1f %8.1f %9.0f\n", s.at.Round(time.Second), s.records,
				s.finished, s.gatewayMB, s.walMB, s.sinksMB, s.rssMB, s.backlog)
		}
	}()
	lat, elapsed, err := pushPaced(g, 8, pushes, due, body, func(string) { sent.Add(1) })
	close(done)
	got := <-samples
	if err != nil {
		return nil, err
	}
	res := map[string]float64{
		"offered_records_per_s":  float64(o.rate),
		"achieved_records_per_s": float64(pushes*o.batch) / elapsed.Seconds(),
		"p50_ms":                 percentile(lat, 50),
		"p99_ms":                 percentile(lat, 99),
	}
	if len(got) > 0 {
		last := got[len(got)-1]
		res["gateway_db_mb_end"], res["wal_mb_end"], res["rss_mb_end"], res["backlog_end"] = last.gatewayMB, last.walMB, last.rssMB, last.backlog
		// The figures after the first minute (or the first sample), to compare the end with.
		early := got[0]
		for _, s := range got {
			if s.at >= time.Minute {
				early = s
				break
			}
		}
		res["gateway_db_mb_early"], res["rss_mb_early"] = early.gatewayMB, early.rssMB
		for _, s := range got {
			res["gateway_db_mb_max"] = max(res["gateway_db_mb_max"], s.gatewayMB+s.walMB)
			res["rss_mb_max"] = max(res["rss_mb_max"], s.rssMB)
		}
	}
	return res, nil
}

type soakSample struct {
	at                        time.Duration
	records                   int64   // records acknowledged so far
	finished                  float64 // records in a final status (gateway_records_finished_total)
	gatewayMB, walMB, sinksMB float64
	rssMB                     float64
	backlog                   float64 // queued fragments (gateway_queue_depth{topic="fragments"})
}

func (g *gatewayProc) sampleSoak(at time.Duration, records int64) soakSample {
	s := soakSample{at: at, records: records,
		gatewayMB: fileMB(filepath.Join(g.nodes[0].dataDir, "gateway.db")),
		walMB:     fileMB(filepath.Join(g.nodes[0].dataDir, "gateway.db-wal")),
		sinksMB:   fileMB(filepath.Join(g.nodes[0].dataDir, "sinks.db")) + fileMB(filepath.Join(g.nodes[0].dataDir, "sinks.db-wal")),
		rssMB:     g.nodes[0].procStatusMB("VmRSS:"),
	}
	if page, err := g.scrape(); err == nil {
		s.finished = sumSeries(page, "gateway_records_finished_total")
		s.backlog = sumSeries(page, `gateway_queue_depth{topic="fragments"}`)
	}
	return s
}

func (g *gatewayProc) scrape() (string, error) {
	resp, err := g.client.Get(g.nodes[0].url + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// sumSeries adds up the samples of the series whose name (with labels, if given) starts with
// prefix.
func sumSeries(page, prefix string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + `(?:\{[^}]*\})? (\S+)$`)
	total := 0.0
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		total += v
	}
	return total
}

func fileMB(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / (1 << 20)
}

// soakEnvelope is a push of n records whose ids cycle through ids, starting at the first-th.
func soakEnvelope(first int64, n int, ids []string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"format":"activity","payload":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		id := (first + int64(i)) % int64(len(ids))
		writeRecord(&b, id%2 == 0, ids[id], 0)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// soakConfig writes a copy of the configuration at path into a temporary folder, with its
// mappings folder made absolute and, when retention is set, retention.tracking and
// retention.payloads set to it. It returns the copy's path.
func soakConfig(path, retention string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return "", fmt.Errorf("%s is not a YAML mapping (%v)", path, err)
	}
	root := doc.Content[0]
	set := func(key string, value *yaml.Node) {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == key {
				root.Content[i+1] = value
				return
			}
		}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, value)
	}
	mappings := "mappings"
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "mappings" {
			mappings = root.Content[i+1].Value
		}
	}
	if !filepath.IsAbs(mappings) {
		abs, err := filepath.Abs(filepath.Join(filepath.Dir(path), mappings))
		if err != nil {
			return "", err
		}
		mappings = abs
	}
	set("mappings", &yaml.Node{Kind: yaml.ScalarNode, Value: mappings})
	if retention != "" {
		if _, err := time.ParseDuration(retention); err != nil {
			return "", fmt.Errorf("-retention %q: %w", retention, err)
		}
		set("retention", &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Value: "tracking"}, {Kind: yaml.ScalarNode, Value: retention},
			{Kind: yaml.ScalarNode, Value: "payloads"}, {Kind: yaml.ScalarNode, Value: retention},
		}})
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "gateway-soak")
	if err != nil {
		return "", err
	}
	copyPath := filepath.Join(dir, "gateway.yaml")
	return copyPath, os.WriteFile(copyPath, out, 0o644)
}

// describeSoak is the soak's parameters, for its report.
func describeSoak(o soakOptions) string {
	r := o.retention
	if r == "" {
		r = "as configured"
	}
	return strings.Join([]string{
		fmt.Sprintf("%d records/s", o.rate), fmt.Sprintf("%d per push", o.batch), fmt.Sprintf("for %s", o.duration),
		fmt.Sprintf("%d distinct ids", o.ids), "retention " + r,
	}, ", ")
}
