package transports

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// httpEnv is the gateway's handler behind a real HTTP server.
type httpEnv struct {
	*eventsEnv
	ts *httptest.Server
}

func newHTTPEnv(t *testing.T) *httpEnv {
	t.Helper()
	e := newEventsEnv(t)
	ts := httptest.NewServer(e.h)
	t.Cleanup(ts.Close)
	return &httpEnv{eventsEnv: e, ts: ts}
}

// post sends body to path with Basic demo credentials (unless headers set Authorization)
// and returns the status, headers and decoded JSON body.
func (e *httpEnv) post(t *testing.T, path string, body io.Reader, headers ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("demo", "demo-secret")
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil && len(raw) > 0 {
		t.Fatalf("%s answered %d with a body that is not JSON: %q", path, resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, out
}

func message(out map[string]any) string {
	m, _ := out["message"].(string)
	return m
}

// waitFor polls cond until it holds; it fails the test after a generous deadline (a
// condition that never comes, not a measure of speed).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func nested(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }

func TestDepthLimitOverHTTP(t *testing.T) {
	e := newHTTPEnv(t)
	e.srv.Limits.MaxDepth = 10
	record := `{"id":"r","type":"call","x":` + nested(8) + `}` // the record is level 3, x levels 4..11
	status, _, out := e.post(t, "/push", strings.NewReader(`{"format":"activity","payload":[{"id":"ok"},`+record+`]}`))
	if status != http.StatusBadRequest || !strings.Contains(message(out), "payload[1] is nested deeper than the limit of 10 levels (limits.max_depth)") {
		t.Errorf("push: %d %v", status, out)
	}
	status, _, out = e.post(t, seedPath, strings.NewReader(`{"correlationId":"c","payment":{"uuid":"u","status":"s"},"x":`+nested(10)+`}`),
		"Authorization", "Bearer demo-token", "Event-Type", "payment_status_updated")
	if status != http.StatusBadRequest || out["valid"] != false || !strings.Contains(message(out), "nested deeper than the limit of 10 levels") {
		t.Errorf("event: %d %v", status, out)
	}
	if n := len(e.intake.submissions()); n != 0 {
		t.Errorf("%d submissions of refused bodies", n)
	}
}

// TestHostileNestingOverHTTP: a 10 MB push of 5,000,000 "[" then "]" is refused with a 400,
// and costs the process the body and little more. Validating it recursively grew the stack by
// ~770 MB, never given back to the system.
func TestHostileNestingOverHTTP(t *testing.T) {
	e := newHTTPEnv(t)
	body := []byte(strings.Repeat("[", 5_000_000) + strings.Repeat("]", 5_000_000))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, path := range []string{"/push", seedPath} {
		status, _, out := e.post(t, path, bytes.NewReader(body), "Authorization", "Bearer demo-token", "Event-Type", "payment_status_updated")
		if status != http.StatusBadRequest || !strings.Contains(message(out), "nested deeper than the limit of 64 levels") {
			t.Errorf("%s: %d %v", path, status, out)
		}
	}
	runtime.ReadMemStats(&after)
	t.Logf("memory obtained from the system grew by %d MB; stacks in use %d -> %d KB",
		(after.Sys-before.Sys)>>20, before.StackInuse>>10, after.StackInuse>>10)
	if after.StackInuse > before.StackInuse+8<<20 {
		t.Errorf("stacks grew from %d to %d bytes", before.StackInuse, after.StackInuse)
	}
	// Two requests: each buffers at most 16 MB on the server while the client sends 10 MB.
	if grew := int64(after.Sys) - int64(before.Sys); grew > 100<<20 {
		t.Errorf("the process took %d MB more from the system", grew>>20)
	}
}

// slowRequest opens a connection that declares a 10 MiB push and sends only sent bytes of it.
func slowRequest(t *testing.T, e *httpEnv, sent int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /push HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic ZGVtbzpkZW1vLXNlY3JldA==\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", MaxBodyBytes)
	part := []byte(`{"format":"activity","payload":[{"id":"` + strings.Repeat("x", sent))[:sent]
	if _, err := conn.Write(part); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestSlowBodyHoldsWhatArrived: a body declaring 10 MiB and sending 4 KiB holds a buffer the
// size of what arrived, not of what was declared, and gives it back when the client goes.
func TestSlowBodyHoldsWhatArrived(t *testing.T) {
	e := newHTTPEnv(t)
	conn := slowRequest(t, e, 4<<10)
	waitFor(t, "the server to buffer the first bytes", func() bool { return e.srv.BufferedBodyBytes() > 0 })
	if held := e.srv.BufferedBodyBytes(); held > 16<<10 {
		t.Errorf("holding %d bytes for 4 KiB received of 10 MiB declared", held)
	}
	conn.Close()
	waitFor(t, "the buffer to be released", func() bool { return e.srv.BufferedBodyBytes() == 0 })
}

// TestInflightBudget: past limits.max_inflight_bytes of buffered bodies, a push is answered 503
// with Retry-After and a message naming the limit; once the buffers are released, it passes.
func TestInflightBudget(t *testing.T) {
	e := newHTTPEnv(t)
	e.srv.Limits.MaxInflightBytes = 1 << 20
	conn := slowRequest(t, e, 768<<10) // its buffer doubles up to 1 MiB
	waitFor(t, "the slow body to fill the budget", func() bool { return e.srv.BufferedBodyBytes() == 1<<20 })

	push := `{"format":"activity","payload":[{"id":"a","type":"call"}]}`
	status, h, out := e.post(t, "/push", strings.NewReader(push))
	if status != http.StatusServiceUnavailable || h.Get("Retry-After") != "2" ||
		!strings.Contains(message(out), "limits.max_inflight_bytes, 1 MiB") {
		t.Errorf("over budget: %d Retry-After=%q %v", status, h.Get("Retry-After"), out)
	}
	conn.Close()
	waitFor(t, "the slow body's buffer to be released", func() bool { return e.srv.BufferedBodyBytes() == 0 })
	if status, _, out := e.post(t, "/push", strings.NewReader(push)); status != http.StatusAccepted {
		t.Errorf("after release: %d %v", status, out)
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestContentEncoding(t *testing.T) {
	e := newHTTPEnv(t)
	push := []byte(`{"format":"activity","request_id":"gz","payload":[{"id":"a","type":"call"},{"id":"b","type":"quote"}]}`)

	status, _, out := e.post(t, "/push", bytes.NewReader(gzipped(t, push)), "Content-Encoding", "gzip")
	if status != http.StatusAccepted {
		t.Fatalf("gzip push: %d %v", status, out)
	}
	subs := e.intake.submissions()
	if len(subs) != 1 || !bytes.Equal(subs[0].Body, push) || len(subs[0].Envelope.Records) != 2 || subs[0].Envelope.BatchReference != "gz" {
		t.Fatalf("submission = %+v", subs)
	}
	status, _, out = e.post(t, seedPath, bytes.NewReader(gzipped(t, []byte(seedEvent))),
		"Content-Encoding", "GZIP", "Authorization", "Bearer demo-token", "Event-Type", "payment_status_updated")
	if status != http.StatusCreated {
		t.Fatalf("gzip event: %d %v", status, out)
	}

	// 20 MiB of white space inside a valid envelope, compressed to a few KB.
	bomb := gzipped(t, []byte(`{"format":"activity","payload":[`+strings.Repeat(" ", 20<<20)+`{"id":"a"}]}`))
	cases := []struct {
		name     string
		body     []byte
		encoding string
		status   int
		msg      string
	}{
		{"gzip bomb", bomb, "gzip", 413, "the body decodes to more than the limit of 10485760 bytes (10 MiB)"},
		{"brotli", push, "br", 415, `Content-Encoding "br" is not supported; send gzip or no Content-Encoding`},
		{"gzip then brotli", push, "gzip, br", 415, `Content-Encoding "gzip, br" is not supported`},
		{"plain body labelled gzip", push, "gzip", 400, "Content-Encoding is gzip but the body is not gzip data"},
		{"empty body labelled gzip", nil, "gzip", 400, "Content-Encoding is gzip but the body is empty"},
		{"truncated gzip", gzipped(t, push)[:40], "gzip", 400, "the gzip body cannot be decoded: unexpected EOF"},
		{"identity is plain", push, "identity", 202, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, out := e.post(t, "/push", bytes.NewReader(c.body), "Content-Encoding", c.encoding)
			if status != c.status || !strings.Contains(message(out), c.msg) {
				t.Errorf("%d %v, want %d with %q", status, out, c.status, c.msg)
			}
		})
	}
	if n := e.srv.BufferedBodyBytes(); n != 0 {
		t.Errorf("%d body bytes still reserved after every request ended", n)
	}
}

// TestBodyOverLimit: a body over 10 MiB without Content-Length (chunked) is cut at the limit
// with 413; the declared length of a bigger body is refused before reading; exactly 10 MiB
// passes.
func TestBodyOverLimit(t *testing.T) {
	e := newHTTPEnv(t)
	big := strings.Repeat("x", MaxBodyBytes+1)
	// A reader that hides its length makes the client send it chunked.
	status, _, out := e.post(t, "/push", io.MultiReader(strings.NewReader(big)))
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(message(out), "over the limit of 10485760 bytes") {
		t.Errorf("chunked: %d %v", status, out)
	}
	// Exactly 10 MiB is within the limit, declared or chunked.
	envelope := `{"format":"activity","payload":[{"id":"a","type":"call"}]}`
	exact := envelope + strings.Repeat(" ", MaxBodyBytes-len(envelope))
	for _, body := range []io.Reader{strings.NewReader(exact), io.MultiReader(strings.NewReader(exact))} {
		if status, _, out := e.post(t, "/push", body); status != http.StatusAccepted {
			t.Errorf("exactly 10 MiB: %d %v", status, out)
		}
	}
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /push HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic ZGVtbzpkZW1vLXNlY3JldA==\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", 1<<30)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("declared 1 GiB: %d", resp.StatusCode)
	}
}

// TestStalledBodyIsCut: a body that stops arriving is cut when the server's read timeout
// passes, with a 408 that names the setting, and its buffer is released.
func TestStalledBodyIsCut(t *testing.T) {
	e := newEventsEnv(t)
	ts := httptest.NewUnstartedServer(e.h)
	ts.Config.ReadTimeout = 300 * time.Millisecond
	ts.Start()
	t.Cleanup(ts.Close)
	conn := slowRequest(t, &httpEnv{eventsEnv: e, ts: ts}, 100)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(raw), "server.read_timeout") {
		t.Errorf("stalled body: %d %s", resp.StatusCode, raw)
	}
	waitFor(t, "the buffer to be released", func() bool { return e.srv.BufferedBodyBytes() == 0 })
}

// TestRecycledBodyBuffers: big bodies are read into recycled buffers; a shorter body read into
// a buffer that held a longer one is exactly itself — records, body, nothing of the first.
func TestRecycledBodyBuffers(t *testing.T) {
	e := newHTTPEnv(t)
	envelope := func(prefix string, n int) []byte {
		var b bytes.Buffer
		b.WriteString(`{"format":"activity","payload":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":"%s-%d","type":"call","note":"%s"}`, prefix, i, strings.Repeat(prefix, 400))
		}
		b.WriteString(`]}`)
		return b.Bytes()
	}
	// 4.0, 2.5 and 1.7 MB: each grows through buffers of 1 and 2 MiB that the one before filled
	// and gave back (the last ends in one of those).
	for i, body := range [][]byte{envelope("a", 9000), envelope("b", 5600), envelope("c", 3800)} {
		if status, _, out := e.post(t, "/push", bytes.NewReader(body)); status != http.StatusAccepted {
			t.Fatalf("push %d: %d %v", i, status, out)
		}
		sub := e.intake.submissions()[i]
		if !bytes.Equal(sub.Body, body) {
			t.Fatalf("push %d: the submission's body (%d bytes) is not the body sent (%d bytes)", i, len(sub.Body), len(body))
		}
		prefix := string(body[bytes.Index(body, []byte(`"id":"`))+6])
		for j, rec := range sub.Envelope.Records {
			if want := fmt.Sprintf(`{"id":"%s-%d",`, prefix, j); !bytes.HasPrefix(rec, []byte(want)) {
				t.Fatalf("push %d, record %d: %.40s, want it to start %s", i, j, rec, want)
			}
		}
	}
	if e.srv.BufferedBodyBytes() != 0 {
		t.Errorf("%d body bytes still reserved after the pushes", e.srv.BufferedBodyBytes())
	}
}
