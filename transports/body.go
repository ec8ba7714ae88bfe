package transports

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/opengw/gateway/pipeline"
)

// DefaultMaxInflightBytes is how many request body bytes all requests together may hold
// buffered unless limits.max_inflight_bytes says otherwise (256 MiB).
const DefaultMaxInflightBytes = 256 << 20

// retryAfterInflight is the Retry-After (seconds) sent while the body budget is spent.
const retryAfterInflight = 2

// firstBodyBuffer is the buffer a body starts in; it grows (doubling) as data arrives.
const firstBodyBuffer = 4 << 10

// Limits bound what requests may cost. Zero fields take the defaults.
type Limits struct {
	MaxDepth         int   // JSON nesting anywhere in a body; pipeline.DefaultMaxDepth
	MaxInflightBytes int64 // body bytes buffered at once, all requests together; DefaultMaxInflightBytes
}

func (l Limits) maxDepth() int {
	if l.MaxDepth > 0 {
		return l.MaxDepth
	}
	return pipeline.DefaultMaxDepth
}

func (l Limits) maxInflight() int64 {
	if l.MaxInflightBytes > 0 {
		return l.MaxInflightBytes
	}
	return DefaultMaxInflightBytes
}

// BufferedBodyBytes reports the request body bytes held in buffers right now, across all
// requests (what limits.max_inflight_bytes bounds).
func (s *Server) BufferedBodyBytes() int64 { return s.inflight.Load() }

// readBody reads the request body, decoding Content-Encoding gzip, up to MaxBodyBytes of
// decoded data. The buffer grows with what arrives, never ahead of it (a declared
// Content-Length only caps the growth), and every byte of it is reserved from the server-wide
// body budget first. The caller must call release once it no longer uses body, also after an
// error. Errors are *requestError: 413 over the limit (without reading further), 415 for another
// encoding, 400 for a body that cannot be read or decoded, 408 when it does not arrive in
// time, 503 (with Retry-After) when the budget is spent.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), err error) {
	b := &bodyBuffer{s: s}
	if r.ContentLength > MaxBodyBytes {
		return nil, b.release, refuse(http.StatusRequestEntityTooLarge, "the body is %d bytes; the limit is %d bytes (10 MiB)", r.ContentLength, MaxBodyBytes)
	}
	gzipped, err := contentEncoding(r.Header)
	if err != nil {
		return nil, b.release, err
	}
	// The raw body is limited too: gzip never makes data much larger, so a raw body over the
	// limit cannot decode to one under it.
	var src io.Reader = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	hint := r.ContentLength
	if gzipped {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, b.release, bodyReadError(err, true)
		}
		defer zr.Close()
		src, hint = zr, -1
	}
	if err := b.readFrom(src, hint); err != nil {
		return nil, b.release, bodyReadError(err, gzipped)
	}
	return b.buf, b.release, nil
}

// contentEncoding reports whether the body is gzip-encoded; identity (or none) is plain, any
// other coding a 415.
func contentEncoding(h http.Header) (gzipped bool, err error) {
	var codings []string
	for _, v := range h.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	switch {
	case len(codings) == 0:
		return false, nil
	case len(codings) == 1 && (codings[0] == "gzip" || codings[0] == "x-gzip"):
		return true, nil
	}
	return false, refuse(http.StatusUnsupportedMediaType, "Content-Encoding %q is not supported; send gzip or no Content-Encoding",
		strings.Join(h.Values("Content-Encoding"), ", "))
}

// errTooLarge is the decoded body passing MaxBodyBytes.
var errTooLarge = errors.New("body over the limit")

// bodyReadError classifies an error of reading (and decoding) a body.
func bodyReadError(err error, gzipped bool) error {
	var re *requestError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &re):
		return re
	case errors.Is(err, errTooLarge) && gzipped:
		return refuse(http.StatusRequestEntityTooLarge, "the body decodes to more than the limit of %d bytes (10 MiB)", MaxBodyBytes)
	case errors.Is(err, errTooLarge) || errors.As(err, &tooBig):
		return refuse(http.StatusRequestEntityTooLarge, "the body is over the limit of %d bytes (10 MiB)", MaxBodyBytes)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return refuse(http.StatusRequestTimeout, "the body did not arrive in time (server.read_timeout)")
	case gzipped && errors.Is(err, io.EOF):
		return refuse(http.StatusBadRequest, "Content-Encoding is gzip but the body is empty")
	case gzipped && errors.Is(err, gzip.ErrHeader):
		return refuse(http.StatusBadRequest, "Content-Encoding is gzip but the body is not gzip data")
	case gzipped:
		return refuse(http.StatusBadRequest, "the gzip body cannot be decoded: %v", err)
	}
	return refuse(http.StatusBadRequest, "could not read the body: %v", err)
}

// bodyBuffer is a body being read, its capacity reserved from its server's budget.
type bodyBuffer struct {
	s        *Server
	buf      []byte
	reserved int64
}

// readFrom reads src to its end. hint, when positive, is the declared length: the buffer never
// grows past it (plus the byte that proves the end), nor past MaxBodyBytes+1.
func (b *bodyBuffer) readFrom(src io.Reader, hint int64) error {
	for {
		if len(b.buf) == cap(b.buf) {
			if len(b.buf) > MaxBodyBytes {
				return errTooLarge
			}
			if err := b.grow(hint); err != nil {
				return err
			}
		}
		n, err := src.Read(b.buf[len(b.buf):cap(b.buf)])
		b.buf = b.buf[:len(b.buf)+n]
		switch {
		case len(b.buf) > MaxBodyBytes:
			return errTooLarge
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
	}
}

// grow doubles the buffer within the limits (from 1 MiB on, rounded up to whole MiB: see
// bigBuffers), reserving the new capacity first.
func (b *bodyBuffer) grow(hint int64) error {
	old := int64(cap(b.buf))
	next := min(max(2*old, firstBodyBuffer), MaxBodyBytes+1)
	if hint >= 0 && hint+1 > old {
		next = min(next, hint+1)
	}
	next = bufferSize(next)
	limit := b.s.Limits.maxInflight()
	if b.s.inflight.Add(next-old) > limit {
		b.s.inflight.Add(old - next)
		return &requestError{status: http.StatusServiceUnavailable, retryAfter: retryAfterInflight,
			msg: "the gateway is holding as many request bodies as it may (limits.max_inflight_bytes, " +
				formatBytes(limit) + "); retry later"}
	}
	b.reserved += next - old
	grown := newBuffer(next)[:len(b.buf)]
	copy(grown, b.buf)
	recycle(b.buf)
	b.buf = grown
	return nil
}

// release returns the buffer's reservation to the budget and the buffer to bigBuffers; neither
// the buffer nor anything sliced from it may be used after.
func (b *bodyBuffer) release() {
	b.s.inflight.Add(-b.reserved)
	b.reserved = 0
	recycle(b.buf)
	b.buf = nil
}

// Big body buffers are recycled. A fresh one of megabytes costs page faults and zeroing: growing
// the buffer of a 2.4 MB push took 5.5 of its 22 ms of intake CPU (pprof under big1). Buffers of
// bigBuffer bytes and more come in whole MiB, and bigBuffers[k] holds those of k+1 MiB. A
// recycled buffer holds an earlier body's bytes past the new body's length: readFrom reads
// into it from its start and the body is only ever the part read.
const bigBuffer = 1 << 20

var bigBuffers [(MaxBodyBytes + 1 + bigBuffer - 1) / bigBuffer]sync.Pool // of *[]byte

// bufferSize is the capacity to allocate for a buffer of n bytes: n rounded up to whole MiB from
// bigBuffer on, so that it can be recycled (and its reservation counts what it holds).
func bufferSize(n int64) int64 {
	if n < bigBuffer {
		return n
	}
	return (n + bigBuffer - 1) / bigBuffer * bigBuffer
}

// newBuffer returns an empty buffer of capacity size (a bufferSize), recycled if one is free.
func newBuffer(size int64) []byte {
	if size >= bigBuffer {
		if p, ok := bigBuffers[size/bigBuffer-1].Get().(*[]byte); ok {
			return (*p)[:0]
		}
	}
	return make([]byte, 0, size)
}

// recycle offers buf, which no one may use any more, for newBuffer to return.
func recycle(buf []byte) {
	if c := int64(cap(buf)); c >= bigBuffer && c%bigBuffer == 0 {
		bigBuffers[c/bigBuffer-1].Put(&buf)
	}
}

// formatBytes writes n in MiB when it is a whole number of them, else in bytes.
func formatBytes(n int64) string {
	if n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// readSmallBody reads a body of at most limit bytes (an API's JSON document) through readBody
// and returns a copy, so the body budget is released at once. Errors are *requestError.
func (s *Server) readSmallBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, release, err := s.readBody(w, r)
	defer release()
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, refuse(http.StatusRequestEntityTooLarge, "the body is %d bytes; the limit is %d bytes (%s)", len(body), limit, mebibytes(limit))
	}
	return bytes.Clone(body), nil
}

// mebibytes writes a byte limit the way people say it: "1 MiB", "10 MiB", "1.5 MiB".
func mebibytes(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', -1, 64) + " MiB"
}
