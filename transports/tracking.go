package transports

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/opengw/gateway/tracker"
)

// The Tracking API (seed 002): POST /tracking searches the caller's requests, POST
// /tracking/cancel cancels one. Both answer synchronously in the seed's envelope
// {"success", "error", "data"}.
//
// Choices where the seed and DESIGN.md are silent:
//   - A body that is empty counts as {} (no criteria: received today, UTC).
//   - "by", sort keys and sort orders match case-insensitively; messageStatus values too.
//     messageType values match case-insensitively as well; ids and references exactly (a
//     request id that is a UUID in any case or spelling uuid.Parse accepts is normalized).
//   - receivedDate takes one value (a whole UTC day) or [from, to], both inclusive. A value is
//     a date (2018-10-01) or an RFC 3339 time (offset optional, UTC if none). A date as `to`
//     includes that whole day; a time without fractional seconds as `to` includes that whole
//     second, so a receivedDate copied from a response (shown to the second) finds its request.
//     A single time stands for the day it is written in (its date as written).
//   - A criterion repeated is ANDed: id, messageType, messageStatus keep the values in both
//     lists, receivedDate ranges intersect (an empty intersection finds nothing). A repeated
//     externalReference is refused (400): a batch reference and a record id cannot be ANDed
//     as one list.
//   - paging: number defaults to 1, size is required when paging is given ({} or null means
//     no paging); without paging the response shows number 1, size = totalRequests.
//   - paging.messages {number, size} pages every selected request's messages (payload) in
//     index order: number defaults to 1, size to the maximum, 1,000, which also applies
//     when paging.messages is absent. It is echoed in the response's paging when given. A
//     payload shorter than the size is a request's last page; the summary counts every
//     message.
//   - batchReference (the envelope's request_id) matches exactly, like id.
//   - The response is encoded request by request as it is written, never into one buffer.
//   - sorts: several are applied in order; order defaults to desc for the dates and asc for
//     batchReference; ties are broken by request id; a request without the value (nothing
//     processed yet, no batch reference) sorts last in either direction.
//   - Absent batch references, record ids and message types are null in the response.
//   - The echoed search is the request's search as given, [] when absent.
//   - Timestamps are RFC 3339 in UTC with a numeric offset, to the second:
//     2018-10-01T08:38:14+00:00, as the seed shows them.

// TrackingStore is what the Tracking API needs of the tracker (every store.Store backend's Tracker).
type TrackingStore interface {
	Find(ctx context.Context, clientID string, f tracker.Filter) (tracker.Page, error)
	Cancel(ctx context.Context, clientID, requestID string) (found bool, cancelled int, err error)
}

// TrackingAPI serves POST /tracking and POST /tracking/cancel for authenticated callers.
// Its zero value is usable: with no Store there are no requests to find or cancel.
type TrackingAPI struct {
	Store TrackingStore // nil: no requests
	// Replayer serves POST /tracking/replay; nil answers 404.
	Replayer Replayer
	Now      func() time.Time // the clock for "today"; nil means time.Now
	Log      *slog.Logger     // nil means slog.Default()
}

const (
	trackingMaxBody     = 1 << 20 // bytes of a request body
	trackingMaxPageSize = 1000
	trackingMaxMessages = 1000 // messages of one request in one response
	trackingMaxValues   = 1000 // values of one search criterion (each is an SQL parameter)
	trackingTimeLayout  = "2006-01-02T15:04:05-07:00"
)

// trackingEnvelope is the seed's response envelope.
type trackingEnvelope struct {
	Success bool                `json:"success"`
	Error   *trackingErrorField `json:"error"`
	Data    any                 `json:"data"`
}

type trackingErrorField struct {
	Message string `json:"message"`
}

type trackingPaging struct {
	Number        int                     `json:"number"`
	Size          int                     `json:"size"`
	TotalRequests int                     `json:"totalRequests"`
	TotalPages    int                     `json:"totalPages"`
	Messages      *trackingMessagesPaging `json:"messages,omitempty"` // echoed when given
}

type trackingMessagesPaging struct {
	Number int `json:"number"`
	Size   int `json:"size"`
}

type trackingRequestOut struct {
	FeedID               string               `json:"feedId"`
	ClientName           string               `json:"clientName"`
	ID                   string               `json:"id"`
	BatchReference       *string              `json:"batchReference"`
	ReceivedDate         string               `json:"receivedDate"`
	RequestStatus        tracker.Status       `json:"requestStatus"`
	MessageStatusSummary trackingSummary      `json:"messageStatusSummary"`
	Payload              []trackingMessageOut `json:"payload"`
}

type trackingSummary struct {
	Total      int `json:"total"`
	Queued     int `json:"queued"`
	Processing int `json:"processing"`
	Cancelled  int `json:"cancelled"`
	Failed     int `json:"failed"`
	Invalid    int `json:"invalid"`
	Complete   int `json:"complete"`
}

type trackingMessageOut struct {
	ID                string                 `json:"id"`
	ExternalReference *string                `json:"externalReference"`
	MessageStatus     tracker.Status         `json:"messageStatus"`
	MessageType       *string                `json:"messageType"`
	ProcessedTime     *string                `json:"processedTime"`
	Errors            []trackingMessageError `json:"errors"`
}

type trackingMessageError struct {
	ErrorMessage string `json:"errorMessage"`
}

type trackingCancelled struct {
	ID        string `json:"id"`
	Cancelled int    `json:"cancelled"`
}

// trackingBadRequest is a client error: its message is shown to the caller.
type trackingBadRequest struct {
	status int
	msg    string
}

func (e *trackingBadRequest) Error() string { return e.msg }

func trackingBad(format string, args ...any) error {
	return &trackingBadRequest{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// Search answers POST /tracking for client clientID (already authenticated with scope
// tracking): only that client's requests are ever searched.
func (a *TrackingAPI) Search(w http.ResponseWriter, r *http.Request, clientID, clientName string) {
	body, err := trackingReadBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := parseTrackingQuery(body, a.now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var page tracker.Page
	if !q.empty && a.Store != nil {
		page, err = a.Store.Find(r.Context(), clientID, q.filter)
		if err != nil {
			a.fail(w, r, fmt.Errorf("search tracking of client %s: %w", clientID, err))
			return
		}
	}
	paging := trackingPaging{Number: 1, Size: page.TotalRequests, TotalRequests: page.TotalRequests, TotalPages: page.TotalPages}
	if q.filter.PageSize > 0 {
		paging.Number, paging.Size = q.filter.Page, q.filter.PageSize
	}
	if q.messagesGiven {
		paging.Messages = &trackingMessagesPaging{Number: q.filter.MessagePage, Size: q.filter.MessagePageSize}
	}
	if err := trackingStream(w, q.search, paging, page.Requests, clientID, clientName); err != nil && r.Context().Err() == nil {
		a.logger().Warn("tracking response cut short", "path", r.URL.Path, "err", err)
	}
}

// trackingStream writes a successful search response, one request at a time: only one
// request's JSON (at most trackingMaxMessages messages) is ever buffered. Once the first byte
// is written the status is 200; an error then can only cut the response short.
func trackingStream(w http.ResponseWriter, search json.RawMessage, paging trackingPaging, views []tracker.RequestView, clientID, clientName string) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // references read as written ("<", "&")
	// part writes prefix and then v's JSON (without Encode's newline).
	part := func(prefix string, v any) error {
		buf.Reset()
		buf.WriteString(prefix)
		if err := enc.Encode(v); err != nil {
			return err
		}
		buf.Truncate(buf.Len() - 1)
		_, err := w.Write(buf.Bytes())
		return err
	}
	if err := part(`{"success":true,"error":null,"data":{"search":`, search); err != nil {
		return err
	}
	if err := part(`,"paging":`, paging); err != nil {
		return err
	}
	if _, err := io.WriteString(w, `,"requests":[`); err != nil {
		return err
	}
	for i, v := range views {
		sep := ""
		if i > 0 {
			sep = ","
		}
		if err := part(sep, trackingRequest(v, clientID, clientName)); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "]}}\n")
	return err
}

// trackingRequest renders one request of a search.
func trackingRequest(v tracker.RequestView, clientID, clientName string) trackingRequestOut {
	out := trackingRequestOut{
		FeedID:         clientID,
		ClientName:     clientName,
		ID:             v.ID,
		BatchReference: trackingOptional(v.BatchReference),
		ReceivedDate:   trackingTime(v.ReceivedAt),
		RequestStatus:  v.Status,
		MessageStatusSummary: trackingSummary{
			Total: v.Summary.Total, Queued: v.Summary.Queued, Processing: v.Summary.Processing,
			Cancelled: v.Summary.Cancelled, Failed: v.Summary.Failed, Invalid: v.Summary.Invalid,
			Complete: v.Summary.Complete,
		},
		Payload: make([]trackingMessageOut, 0, len(v.Messages)),
	}
	for _, m := range v.Messages {
		mo := trackingMessageOut{
			ID:                m.ID,
			ExternalReference: trackingOptional(m.ExternalReference),
			MessageStatus:     m.Status,
			MessageType:       trackingOptional(m.Type),
			Errors:            make([]trackingMessageError, 0, len(m.Errors)),
		}
		if !m.ProcessedAt.IsZero() {
			s := trackingTime(m.ProcessedAt)
			mo.ProcessedTime = &s
		}
		for _, e := range m.Errors {
			mo.Errors = append(mo.Errors, trackingMessageError{ErrorMessage: e})
		}
		out.Payload = append(out.Payload, mo)
	}
	return out
}

// Cancel answers POST /tracking/cancel {"id": "<request id>"} for client clientID: the
// request's messages still Queued end Cancelled and are never delivered. Another client's
// request id is answered 404, exactly like an unknown one.
func (a *TrackingAPI) Cancel(w http.ResponseWriter, r *http.Request, clientID string) {
	body, err := trackingReadBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var in struct {
		ID json.RawMessage `json:"id"`
	}
	if err := trackingDecode(body, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	var id string
	if len(in.ID) == 0 || string(in.ID) == "null" {
		a.fail(w, r, trackingBad(`id is required: {"id": "<request id>"}`))
		return
	}
	if err := json.Unmarshal(in.ID, &id); err != nil || strings.TrimSpace(id) == "" {
		a.fail(w, r, trackingBad("id must be a request id (a non-empty string), got %s", trackingShort(in.ID)))
		return
	}
	id = trackingNormalizeID(id)
	var (
		found bool
		n     int
	)
	if a.Store != nil {
		found, n, err = a.Store.Cancel(r.Context(), clientID, id)
	}
	if err != nil {
		a.fail(w, r, fmt.Errorf("cancel request %s of client %s: %w", id, clientID, err))
		return
	}
	if !found {
		a.fail(w, r, &trackingBadRequest{status: http.StatusNotFound, msg: "no request " + id})
		return
	}
	trackingWrite(w, http.StatusOK, trackingEnvelope{Success: true, Data: trackingCancelled{ID: id, Cancelled: n}})
}

func (a *TrackingAPI) logger() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

func (a *TrackingAPI) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// fail answers err: a trackingBadRequest with its status and message, anything else 500 (logged,
// not shown).
func (a *TrackingAPI) fail(w http.ResponseWriter, r *http.Request, err error) {
	var bad *trackingBadRequest
	if errors.As(err, &bad) {
		trackingWrite(w, bad.status, trackingEnvelope{Error: &trackingErrorField{Message: bad.msg}})
		return
	}
	if r.Context().Err() == nil {
		a.logger().Error("tracking request failed", "path", r.URL.Path, "err", err)
	}
	trackingWrite(w, http.StatusInternalServerError, trackingEnvelope{Error: &trackingErrorField{Message: "internal error; the failure was logged"}})
}

func trackingWrite(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // error messages and references read as written ("<", "&")
	_ = enc.Encode(v)
}

// trackingReadBody reads at most trackingMaxBody bytes; more is a 413.
func trackingReadBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, trackingMaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, &trackingBadRequest{status: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("request body over the limit of %d bytes", trackingMaxBody)}
	case err != nil:
		return nil, trackingBad("reading the request body: %v", err)
	}
	return body, nil
}

// trackingDecode unmarshals a JSON object body; an empty body is {}.
func trackingDecode(body []byte, v any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	if body[0] != '{' {
		if !json.Valid(body) {
			return trackingSyntax(body, json.Unmarshal(body, v))
		}
		return trackingBad("the body must be a JSON object")
	}
	err := json.Unmarshal(body, v)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		// Seed 002's own example ends its search list with "},\n ]": a partner copying it
		// sends a trailing comma. That is unambiguous, so it is forgiven; nothing else is.
		if lenient := dropTrailingCommas(body); json.Valid(lenient) {
			err = json.Unmarshal(lenient, v)
		}
	}
	if err != nil {
		return trackingSyntax(body, err)
	}
	return nil
}

// dropTrailingCommas removes commas that directly precede (but for white space) a closing ]
// or }, outside strings.
func dropTrailingCommas(body []byte) []byte {
	out := make([]byte, 0, len(body))
	inString, escaped := false, false
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ',':
			j := i + 1
			for j < len(body) && (body[j] == ' ' || body[j] == '\t' || body[j] == '\r' || body[j] == '\n') {
				j++
			}
			if j < len(body) && (body[j] == ']' || body[j] == '}') {
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// trackingSyntax describes a JSON error, with its position when known.
func trackingSyntax(body []byte, err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		hint := ""
		prev := bytes.TrimRight(body[:max(syn.Offset-1, 0)], " \t\r\n")
		if len(prev) > 0 && prev[len(prev)-1] == ',' {
			hint = " (a trailing comma?)"
		}
		return trackingBad("malformed JSON at byte %d: %v%s", syn.Offset, err, hint)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return trackingBad("malformed request: %s must not be a JSON %s", typ.Field, typ.Value)
	}
	return trackingBad("malformed JSON: %v", err)
}

// trackingQuery is a parsed search request.
type trackingQuery struct {
	filter        tracker.Filter
	search        json.RawMessage // echo
	empty         bool            // criteria that no request can meet (empty intersection)
	messagesGiven bool            // paging.messages was given (and is echoed)
}

var trackingCriteria = []string{"messageType", "messageStatus", "receivedDate", "id", "externalReference", "batchReference"}

// parseTrackingQuery parses a POST /tracking body; now decides "today".
func parseTrackingQuery(body []byte, now time.Time) (trackingQuery, error) {
	var in struct {
		Search json.RawMessage `json:"search"`
		Paging json.RawMessage `json:"paging"`
		Sorts  json.RawMessage `json:"sorts"`
	}
	if err := trackingDecode(body, &in); err != nil {
		return trackingQuery{}, err
	}
	q := trackingQuery{search: json.RawMessage("[]")}
	if len(in.Search) > 0 && string(in.Search) != "null" {
		q.search = in.Search
	}
	if err := q.parseSearch(in.Search, now); err != nil {
		return q, err
	}
	if err := q.parsePaging(in.Paging); err != nil {
		return q, err
	}
	if err := q.parseSorts(in.Sorts); err != nil {
		return q, err
	}
	return q, nil
}

func (q *trackingQuery) parseSearch(raw json.RawMessage, now time.Time) error {
	var items []json.RawMessage
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &items); err != nil {
			return trackingBad(`search must be a list of {"by": ..., "value": ...} criteria, got %s`, trackingShort(raw))
		}
	}
	f := &q.filter
	if len(items) == 0 {
		day := now.UTC().Truncate(24 * time.Hour)
		f.ReceivedFrom, f.ReceivedTo = day, day.Add(24*time.Hour-time.Nanosecond)
		return nil
	}
	seen := map[string]bool{}
	for i, item := range items {
		var c struct {
			By    json.RawMessage `json:"by"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(item, &c); err != nil || bytes.TrimSpace(item)[0] != '{' {
			return trackingBad(`search[%d] must be an object {"by": ..., "value": ...}, got %s`, i, trackingShort(item))
		}
		var by string
		if err := json.Unmarshal(c.By, &by); err != nil {
			return trackingBad("search[%d].by must be one of %s, got %s", i, strings.Join(trackingCriteria, ", "), trackingShort(c.By))
		}
		key := strings.ToLower(strings.TrimSpace(by))
		if key == "recieveddate" { // the seed's spelling
			key = "receiveddate"
		}
		values, err := trackingValues(c.Value)
		if err != nil {
			return trackingBad("search[%d].value (%s) must be a string or a non-empty list of strings, got %s", i, by, trackingShort(c.Value))
		}
		if len(values) > trackingMaxValues {
			return trackingBad("search[%d].value (%s) has %d values; at most %d are allowed", i, by, len(values), trackingMaxValues)
		}
		repeated := seen[key]
		seen[key] = true
		switch key {
		case "id":
			for j, v := range values {
				values[j] = trackingNormalizeID(v)
			}
			f.RequestIDs = trackingAnd(f.RequestIDs, values, repeated, false)
			q.empty = q.empty || len(f.RequestIDs) == 0
		case "batchreference":
			f.BatchReferences = trackingAnd(f.BatchReferences, values, repeated, false)
			q.empty = q.empty || len(f.BatchReferences) == 0
		case "externalreference":
			if repeated {
				return trackingBad("search[%d]: externalReference is given more than once; list all references in one criterion", i)
			}
			f.ExternalReferences = values
		case "messagetype":
			f.MessageTypes = trackingAnd(f.MessageTypes, values, repeated, true)
			q.empty = q.empty || len(f.MessageTypes) == 0
		case "messagestatus":
			var sts []string
			for _, v := range values {
				st, ok := tracker.ParseStatus(strings.TrimSpace(v))
				if !ok {
					names := make([]string, len(tracker.Statuses))
					for j, s := range tracker.Statuses {
						names[j] = string(s)
					}
					return trackingBad("search[%d].value %q is not a message status (%s)", i, v, strings.Join(names, ", "))
				}
				sts = append(sts, string(st))
			}
			var cur []string
			for _, s := range f.Statuses {
				cur = append(cur, string(s))
			}
			f.Statuses = nil
			for _, s := range trackingAnd(cur, sts, repeated, false) {
				f.Statuses = append(f.Statuses, tracker.Status(s))
			}
			q.empty = q.empty || len(f.Statuses) == 0
		case "receiveddate":
			from, to, err := trackingRange(values)
			if err != nil {
				return trackingBad("search[%d].value (%s): %v", i, by, err)
			}
			if !repeated || from.After(f.ReceivedFrom) {
				f.ReceivedFrom = from
			}
			if !repeated || to.Before(f.ReceivedTo) {
				f.ReceivedTo = to
			}
			q.empty = q.empty || f.ReceivedFrom.After(f.ReceivedTo)
		default:
			return trackingBad("search[%d].by %q is not one of %s", i, by, strings.Join(trackingCriteria, ", "))
		}
	}
	return nil
}

// trackingValues decodes a criterion's value: a string or a non-empty list of strings.
func trackingValues(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil || len(many) == 0 {
		return nil, errors.New("not a string or a non-empty list of strings")
	}
	return many, nil
}

// trackingAnd merges a criterion's values into those of an earlier occurrence of the same
// criterion (AND: the values in both), deduplicating.
func trackingAnd(cur, values []string, repeated, foldCase bool) []string {
	eq := func(a, b string) bool { return a == b }
	if foldCase {
		eq = strings.EqualFold
	}
	var out []string
	for _, v := range values {
		if slices.ContainsFunc(out, func(o string) bool { return eq(o, v) }) {
			continue
		}
		if repeated && !slices.ContainsFunc(cur, func(o string) bool { return eq(o, v) }) {
			continue
		}
		out = append(out, v)
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// trackingRange turns receivedDate values into an inclusive range: one value is a whole UTC day,
// two are [from, to].
func trackingRange(values []string) (from, to time.Time, err error) {
	switch len(values) {
	case 1:
		t, _, err := trackingParseTime(values[0])
		if err != nil {
			return from, to, err
		}
		day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return day, day.Add(24*time.Hour - time.Nanosecond), nil
	case 2:
		from, _, err = trackingParseTime(values[0])
		if err != nil {
			return from, to, err
		}
		var span time.Duration
		to, span, err = trackingParseTime(values[1])
		if err != nil {
			return from, to, err
		}
		to = to.Add(span - time.Nanosecond)
		if from.After(to) {
			return from, to, fmt.Errorf("from %q is after to %q", values[0], values[1])
		}
		return from, to, nil
	default:
		return from, to, fmt.Errorf("give one date (a whole day) or [from, to], not %d values", len(values))
	}
}

// trackingParseTime parses a date or an RFC 3339 time (offset optional: UTC), returning the
// instant and the span the value stands for (a day, a second, or a nanosecond when fractional
// seconds are given).
func trackingParseTime(s string) (time.Time, time.Duration, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, 24 * time.Hour, nil
	}
	span := time.Second
	if strings.Contains(s, ".") {
		span = time.Nanosecond
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, span, nil
		}
	}
	return time.Time{}, 0, fmt.Errorf("%q is not a date (2018-10-01) or an RFC 3339 time (2018-10-01T00:00:00+00:00)", s)
}

func (q *trackingQuery) parsePaging(raw json.RawMessage) error {
	q.filter.MessagePage, q.filter.MessagePageSize = 1, trackingMaxMessages
	if trackingAbsent(raw) {
		return nil
	}
	var p struct {
		Number   json.RawMessage `json:"number"`
		Size     json.RawMessage `json:"size"`
		Messages json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || bytes.TrimSpace(raw)[0] != '{' {
		return trackingBad(`paging must be an object {"number": ..., "size": ..., "messages": {"number": ..., "size": ...}}, got %s`, trackingShort(raw))
	}
	if err := q.parseMessagesPaging(p.Messages); err != nil {
		return err
	}
	if trackingAbsent(p.Number) && trackingAbsent(p.Size) {
		return nil
	}
	number := 1
	if !trackingAbsent(p.Number) {
		n, err := trackingInt(p.Number)
		if err != nil || n < 1 {
			return trackingBad("paging.number must be a page number from 1, got %s", trackingShort(p.Number))
		}
		number = n
	}
	if trackingAbsent(p.Size) {
		return trackingBad("paging.size is required with paging (1 to %d)", trackingMaxPageSize)
	}
	size, err := trackingInt(p.Size)
	if err != nil || size < 1 || size > trackingMaxPageSize {
		return trackingBad("paging.size must be a number from 1 to %d, got %s", trackingMaxPageSize, trackingShort(p.Size))
	}
	q.filter.Page, q.filter.PageSize = number, size
	return nil
}

// parseMessagesPaging parses paging.messages {number, size}: the page of each request's
// messages, number from 1 (default 1), size from 1 to trackingMaxMessages (default the most).
func (q *trackingQuery) parseMessagesPaging(raw json.RawMessage) error {
	if trackingAbsent(raw) {
		return nil
	}
	var p struct {
		Number json.RawMessage `json:"number"`
		Size   json.RawMessage `json:"size"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || bytes.TrimSpace(raw)[0] != '{' {
		return trackingBad(`paging.messages must be an object {"number": ..., "size": ...}, got %s`, trackingShort(raw))
	}
	if !trackingAbsent(p.Number) {
		n, err := trackingInt(p.Number)
		if err != nil || n < 1 {
			return trackingBad("paging.messages.number must be a page number from 1, got %s", trackingShort(p.Number))
		}
		q.filter.MessagePage = n
	}
	if !trackingAbsent(p.Size) {
		n, err := trackingInt(p.Size)
		if err != nil || n < 1 || n > trackingMaxMessages {
			return trackingBad("paging.messages.size must be a number from 1 to %d, got %s", trackingMaxMessages, trackingShort(p.Size))
		}
		q.filter.MessagePageSize = n
	}
	q.messagesGiven = true
	return nil
}

// trackingAbsent reports whether a JSON member is missing or null.
func trackingAbsent(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// trackingInt reads a whole number given as a JSON number or a numeric string.
func trackingInt(raw json.RawMessage) (int, error) {
	s := string(bytes.TrimSpace(raw))
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		s = strings.TrimSpace(s)
	}
	return strconv.Atoi(s)
}

var (
	trackingSortKeys   = []string{"receivedDate", "processedDate", "batchReference"}
	trackingSortOrders = []string{"asc", "desc", "ascending", "descending"}
)

func (q *trackingQuery) parseSorts(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return trackingBad(`sorts must be a list of {"by": ..., "order": ...}, got %s`, trackingShort(raw))
	}
	for i, item := range items {
		var s struct {
			By    json.RawMessage `json:"by"`
			Order json.RawMessage `json:"order"`
		}
		if err := json.Unmarshal(item, &s); err != nil || bytes.TrimSpace(item)[0] != '{' {
			return trackingBad(`sorts[%d] must be an object {"by": ..., "order": ...}, got %s`, i, trackingShort(item))
		}
		var by string
		_ = json.Unmarshal(s.By, &by)
		var sort tracker.Sort
		switch strings.ToLower(strings.TrimSpace(by)) {
		case "receiveddate", "recieveddate":
			sort = tracker.Sort{By: tracker.SortReceivedDate, Desc: true}
		case "processeddate":
			sort = tracker.Sort{By: tracker.SortProcessedDate, Desc: true}
		case "batchreference":
			sort = tracker.Sort{By: tracker.SortBatchReference}
		default:
			return trackingBad("sorts[%d].by %s is not one of %s", i, trackingShort(s.By), strings.Join(trackingSortKeys, ", "))
		}
		if len(s.Order) > 0 && string(s.Order) != "null" {
			var order string
			_ = json.Unmarshal(s.Order, &order)
			switch strings.ToLower(strings.TrimSpace(order)) {
			case "asc", "ascending":
				sort.Desc = false
			case "desc", "descending":
				sort.Desc = true
			default:
				return trackingBad("sorts[%d].order %s is not one of %s", i, trackingShort(s.Order), strings.Join(trackingSortOrders, ", "))
			}
		}
		q.filter.Sorts = append(q.filter.Sorts, sort)
	}
	return nil
}

// trackingNormalizeID writes a UUID request id in its canonical form; other ids stay as given.
func trackingNormalizeID(id string) string {
	id = strings.TrimSpace(id)
	if u, err := uuid.Parse(id); err == nil {
		return u.String()
	}
	return id
}

// trackingShort quotes a JSON value for an error message, shortened if long.
func trackingShort(raw json.RawMessage) string {
	s := string(bytes.TrimSpace(raw))
	if s == "" {
		return "nothing"
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func trackingOptional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func trackingTime(t time.Time) string { return t.UTC().Format(trackingTimeLayout) }
