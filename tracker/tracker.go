// Package tracker is the gateway's tracking projection: it records every accepted request and
// every message (record) in it, follows each message through its statuses, and answers the
// Tracking API's searches (seed 002, POST /tracking).
//
// # Lifecycle
//
// A request is recorded when it is accepted (AcceptTx, inside the intake transaction that also
// enqueues its envelope). When the pipeline splits the envelope it records the messages
// (AddMessages), all Queued. Before delivering a message the pipeline claims it (Claim,
// Queued -> Processing) and when the sinks have answered it records the outcome (Finish,
// -> Complete, Failed or Invalid). A partner may cancel a request (Cancel): its messages still
// Queued become Cancelled and Claim never hands them out again.
//
//	Queued ──Claim──▶ Processing ──Finish──▶ Complete | Failed | Invalid
//	   │                                        ▲
//	   ├──Finish (e.g. Invalid at validation) ──┘
//	   └──Cancel──▶ Cancelled
//
// Every write is idempotent and every transition is a compare-and-set on the message's current
// status, so the pipeline's at-least-once redeliveries never double-count and a terminal status
// is final: the first terminal status recorded for a message wins.
//
// # Request status and summary
//
// A request's summary (total, queued, processing, cancelled, failed, invalid, complete) always
// covers the whole request, whatever a search selected. Until the envelope is split the request
// has no message rows; its not-yet-recorded messages count as queued (or as cancelled once the
// request is cancelled, because they will be recorded Cancelled). The request status is
//
//   - Complete once every message is terminal (Complete, Failed, Invalid or Cancelled),
//   - Queued while every message is still queued (nothing has started),
//   - Processing otherwise.
//
// # Storage
//
// This package holds only the domain: types, semantics and the Writer and Store contracts. The
// backends hold the SQL: internal/sqlitestore (tables prefixed tracker_ in the gateway's SQLite
// database) and internal/pgstore (PostgreSQL), both held to the same semantics by the shared
// suite in internal/store/storetest.
package tracker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Status is a message's status, as shown to partners.
type Status string

// The six statuses of a message. Complete, Failed, Invalid and Cancelled are terminal.
const (
	Queued     Status = "Queued"
	Processing Status = "Processing"
	Complete   Status = "Complete"
	Failed     Status = "Failed"
	Invalid    Status = "Invalid"
	Cancelled  Status = "Cancelled"
)

// Statuses lists every status in lifecycle order.
var Statuses = []Status{Queued, Processing, Complete, Failed, Invalid, Cancelled}

// Terminal reports whether s is final: a message in a terminal status never changes again.
func (s Status) Terminal() bool {
	switch s {
	case Complete, Failed, Invalid, Cancelled:
		return true
	}
	return false
}

// Valid reports whether s is one of the six statuses.
func (s Status) Valid() bool { return s.code() >= 0 }

// ParseStatus returns the status named s, ignoring case ("failed" is Failed).
func ParseStatus(s string) (Status, bool) {
	for _, st := range Statuses {
		if strings.EqualFold(s, string(st)) {
			return st, true
		}
	}
	return "", false
}

// code is the status's stored representation (its index in Statuses), -1 if unknown.
func (s Status) code() int {
	switch s {
	case Queued:
		return 0
	case Processing:
		return 1
	case Complete:
		return 2
	case Failed:
		return 3
	case Invalid:
		return 4
	case Cancelled:
		return 5
	}
	return -1
}

// Request is an accepted request (one envelope) as recorded at intake.
type Request struct {
	ID             string // the gateway's request id (a UUID), returned to the partner in the 202
	ClientID       string // the partner's client id (feedId)
	ClientName     string
	BatchReference string // the envelope's request_id, if any
	Format         string
	ReceivedAt     time.Time
	Total          int // number of records in the envelope
}

// NewMessage is one record of a request, as recorded when the envelope is split.
type NewMessage struct {
	Index             int    // 0-based position of the record in the envelope
	ExternalReference string // the record's own id, "" if it has none
	Type              string // the record's message type, "" if unknown
	// Claimed records the message Processing instead of Queued, as if Claim had moved it at
	// once: for a caller that claims it in the same transaction, one write instead of two.
	Claimed bool
}

// RecordNew records msgs, new messages of a request, through insert: all Cancelled if the
// request is cancelled, otherwise Processing those marked Claimed and Queued the others, with
// one insert call per status (a backend's one statement). insert returns how many messages it
// recorded (not those recorded before); RecordNew returns those counts by status.
func RecordNew(msgs []NewMessage, cancelled bool, insert func(msgs []NewMessage, status Status) (int64, error)) (map[Status]int64, error) {
	if cancelled {
		n, err := insert(msgs, Cancelled)
		return map[Status]int64{Cancelled: n}, err
	}
	var claimed, queued []NewMessage
	for _, m := range msgs {
		if m.Claimed {
			claimed = append(claimed, m)
		} else {
			queued = append(queued, m)
		}
	}
	out := map[Status]int64{}
	for status, group := range map[Status][]NewMessage{Processing: claimed, Queued: queued} {
		if len(group) == 0 {
			continue
		}
		n, err := insert(group, status)
		if err != nil {
			return nil, err
		}
		out[status] = n
	}
	return out, nil
}

// Result is a message's terminal outcome.
type Result struct {
	Index          int
	Status         Status // Complete, Failed, Invalid or Cancelled
	Errors         []string
	MappingVersion string
}

// MessageID is the id partners see for the message at index of request requestID: a UUID v5
// (SHA-1) of the index in decimal under the request's UUID as namespace. It is deterministic,
// so redeliveries carry the same id (sinks upsert by it). A request id that is not a UUID is
// first turned into one (UUID v5 of the id under the OID namespace).
func MessageID(requestID string, index int) string {
	return MessageIDIn(MessageNamespace(requestID), index)
}

// MessageNamespace is the UUID namespace of request requestID's message ids: the request id
// itself, or a name-based UUID of it when it is not a UUID.
func MessageNamespace(requestID string) uuid.UUID {
	ns, err := uuid.Parse(requestID)
	if err != nil {
		ns = uuid.NewSHA1(uuid.NameSpaceOID, []byte(requestID))
	}
	return ns
}

// MessageIDIn is MessageID for a request whose MessageNamespace is ns, computed once for all
// of its messages.
func MessageIDIn(ns uuid.UUID, index int) string {
	return uuid.NewSHA1(ns, strconv.AppendInt(nil, int64(index), 10)).String()
}

// ValidUTF8 returns s with every byte that is not part of valid UTF-8 replaced by U+FFFD, as
// encoding/json decodes such a byte. Record ids and types are not checked for UTF-8 at intake;
// the backends store them through ValidUTF8, so a search decoded from JSON finds them.
func ValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString("\ufffd")
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// StoredMessage is a message as the backends store it: the columns of its row.
type StoredMessage struct {
	Index                                   int
	ExternalReference, Type, MappingVersion string    // "" when NULL
	StatusCode                              int       // its status's position in Statuses
	ProcessedAt                             time.Time // zero when NULL
	Errors                                  string    // a JSON array of strings, "" when NULL
}

// View is m as tracking shows it; ns is its request's MessageNamespace.
func (m StoredMessage) View(ns uuid.UUID) (MessageView, error) {
	v := MessageView{ID: MessageIDIn(ns, m.Index), Index: m.Index, ExternalReference: m.ExternalReference,
		Type: m.Type, MappingVersion: m.MappingVersion, ProcessedAt: m.ProcessedAt}
	if m.StatusCode >= 0 && m.StatusCode < len(Statuses) {
		v.Status = Statuses[m.StatusCode]
	}
	if m.Errors != "" {
		if err := json.Unmarshal([]byte(m.Errors), &v.Errors); err != nil {
			return MessageView{}, fmt.Errorf("read errors of message %d: %w", m.Index, err)
		}
	}
	return v, nil
}

// ErrNotFound is returned by the write methods for a request that was never accepted.
var ErrNotFound = errors.New("tracker: no such request")

// ErrInvalidFilter is returned by Find for a filter it cannot run (unknown status or sort key,
// negative paging).
var ErrInvalidFilter = errors.New("tracker: invalid filter")

// SortKey names what requests can be sorted by.
type SortKey string

// Sort keys, named as in the Tracking API.
const (
	SortReceivedDate   SortKey = "receivedDate"
	SortProcessedDate  SortKey = "processedDate" // the request's latest message processed time
	SortBatchReference SortKey = "batchReference"
)

// Sort is one sort criterion.
type Sort struct {
	By   SortKey
	Desc bool
}

// Filter is a tracking search for one client. All criteria must hold (AND); the values of one
// criterion are alternatives (OR). An empty criterion does not filter.
//
// Request-level criteria: RequestIDs (the gateway's request ids) and the received time range.
// Message-level criteria: MessageTypes (case-insensitive), Statuses and ExternalReferences. An
// external reference matches a request's batch reference — then it holds for every message of
// that request — or a message's own external reference (the record's id).
//
// A request is selected when it meets the request-level criteria and, if there are
// message-level criteria, at least one of its messages meets all of them (a request selected by
// its batch reference alone needs no message). Its Messages are the messages meeting the
// message-level criteria — all of its messages when there are none — in index order, paged by
// MessagePage and MessagePageSize.
type Filter struct {
	RequestIDs         []string
	ExternalReferences []string
	// BatchReferences is request-level: the request's batch reference (the envelope's
	// request_id) is one of these, compared exactly. Unlike ExternalReferences it never
	// matches a record's id.
	BatchReferences []string
	MessageTypes    []string
	Statuses        []Status
	// ReceivedFrom and ReceivedTo bound the request's received time, both inclusive; a zero
	// time leaves that side open.
	ReceivedFrom, ReceivedTo time.Time
	// Page is 1-based (0 means 1); PageSize 0 returns every selected request on one page.
	Page, PageSize int
	// MessagePage is 1-based (0 means 1); MessagePageSize 0 shows every selected message of a
	// request. With a size, each selected request's Messages are page MessagePage of its
	// selected messages in index order, empty beyond their last page. Message paging never
	// changes which requests are selected, nor their summaries (always over every message).
	MessagePage, MessagePageSize int
	// Sorts order the requests, first criterion first; empty means receivedDate descending.
	// Ties are always broken by request id, so paging is stable. A request without the value
	// (nothing processed yet, no batch reference) sorts after the others, in either direction.
	// A key repeated is ignored after its first occurrence.
	Sorts []Sort
}

// Validate returns ErrInvalidFilter (wrapped, naming the value) for a filter no backend can run:
// an unknown status or sort key, a negative page or page size.
func (f *Filter) Validate() error {
	for _, st := range f.Statuses {
		if !st.Valid() {
			return fmt.Errorf("%w: unknown status %q", ErrInvalidFilter, st)
		}
	}
	for _, so := range f.Sorts {
		switch so.By {
		case SortReceivedDate, SortProcessedDate, SortBatchReference:
		default:
			return fmt.Errorf("%w: unknown sort key %q", ErrInvalidFilter, so.By)
		}
	}
	if f.Page < 0 || f.PageSize < 0 {
		return fmt.Errorf("%w: negative page %d or page size %d", ErrInvalidFilter, f.Page, f.PageSize)
	}
	if f.MessagePage < 0 || f.MessagePageSize < 0 {
		return fmt.Errorf("%w: negative message page %d or message page size %d", ErrInvalidFilter, f.MessagePage, f.MessagePageSize)
	}
	return nil
}

// RequestWindow is the page of requests f asks for out of total matching ones: the number of
// pages, and the window to read (limit < 0: all of them from offset). ok is false when the
// page asked for is empty, so nothing needs reading.
func (f *Filter) RequestWindow(total int) (pages, limit, offset int, ok bool) {
	if f.PageSize > 0 {
		pages = (total + f.PageSize - 1) / f.PageSize
		p := max(f.Page, 1)
		if p > pages {
			return pages, 0, 0, false
		}
		return pages, f.PageSize, (p - 1) * f.PageSize, true
	}
	if total == 0 {
		return 0, 0, 0, false
	}
	return 1, -1, 0, f.Page <= 1
}

// MessageOffset is how many of a request's selected messages precede page MessagePage (0
// without message paging). It saturates at math.MaxInt rather than overflowing, so a page
// number far beyond the end selects nothing.
func (f *Filter) MessageOffset() int {
	p := max(f.MessagePage, 1) - 1
	if f.MessagePageSize <= 0 || p == 0 {
		return 0
	}
	if p > math.MaxInt/f.MessagePageSize {
		return math.MaxInt
	}
	return p * f.MessagePageSize
}

// EffectiveSorts is the order Sorts asks for, as backends apply it: receivedDate descending
// when empty, and each key once (a repeated key is ignored after its first occurrence).
func (f *Filter) EffectiveSorts() []Sort {
	if len(f.Sorts) == 0 {
		return []Sort{{By: SortReceivedDate, Desc: true}}
	}
	out := make([]Sort, 0, len(f.Sorts))
	for _, so := range f.Sorts {
		if !slices.ContainsFunc(out, func(o Sort) bool { return o.By == so.By }) {
			out = append(out, so)
		}
	}
	return out
}

// Page is the answer to a search.
type Page struct {
	TotalRequests int // selected requests, over all pages
	TotalPages    int // ceil(TotalRequests/PageSize); with no paging 1, or 0 if nothing matched
	Requests      []RequestView
}

// Summary counts a request's messages by status, over the whole request.
type Summary struct {
	Total, Queued, Processing, Cancelled, Failed, Invalid, Complete int
}

// SummaryOf is the summary of a request of total messages whose recorded messages are counted
// by recorded: recorded.Total rows, of which recorded.Processing, Complete, Failed, Invalid
// and Cancelled are in those statuses (recorded.Queued is ignored: the rest are queued).
// Messages not yet recorded count as queued, or as cancelled when the request is cancelled
// (they will be recorded Cancelled). Backends that keep per-status counters build summaries
// with it.
func SummaryOf(total int, recorded Summary, cancelled bool) Summary {
	s := recorded
	s.Total = max(total, recorded.Total)
	s.Queued = recorded.Total - s.Processing - s.Complete - s.Failed - s.Invalid - s.Cancelled
	if pending := s.Total - recorded.Total; cancelled {
		s.Cancelled += pending
	} else {
		s.Queued += pending
	}
	return s
}

// Status is the request status the summary implies (see the package documentation).
func (s Summary) Status() Status {
	terminal := s.Complete + s.Failed + s.Invalid + s.Cancelled
	switch {
	case terminal >= s.Total:
		return Complete
	case s.Queued >= s.Total:
		return Queued
	default:
		return Processing
	}
}

// Completion describes a request that a write has just completed.
type Completion struct {
	Summary    Summary // over the whole request, after the write
	ReceivedAt time.Time
}

// CompletionOf returns the Completion of a request of total messages whose recorded messages
// are counted by recorded (see SummaryOf), or nil if some message is still Queued or
// Processing. Backends call it with the counters a terminal write left.
func CompletionOf(total int, recorded Summary, cancelled bool, receivedAt time.Time) *Completion {
	s := SummaryOf(total, recorded, cancelled)
	if s.Status() != Complete {
		return nil
	}
	return &Completion{Summary: s, ReceivedAt: receivedAt}
}

// RequestView is a selected request with its summary and the messages the search selected.
type RequestView struct {
	Request
	Status          Status    // Queued, Processing or Complete
	Summary         Summary   // over the whole request
	CancelledAt     time.Time // zero unless a partner cancelled the request
	LastProcessedAt time.Time // the latest processed time of its messages, zero if none
	Messages        []MessageView
}

// MessageView is one message of a request as tracking shows it.
type MessageView struct {
	ID                string // MessageID(request id, Index)
	Index             int
	ExternalReference string
	Type              string
	Status            Status
	ProcessedAt       time.Time // when it reached its terminal status; zero until then
	Errors            []string
	MappingVersion    string
}

// Writer records a request's status changes inside a store transaction (store.Tx.Tracker), so
// they commit together with the queue work that causes them. Every method is idempotent and
// every transition a compare-and-set, as the package documentation describes. A Writer is used
// by one goroutine, inside one transaction.
type Writer interface {
	// Accept records request r (inside the intake transaction that enqueues its envelope) and
	// msgs, its messages, Queued (their Claimed is ignored): one write where Accept and then
	// AddMessages would make two. Recording the same id again does nothing, msgs included:
	// the first record stands.
	Accept(r Request, msgs ...NewMessage) error
	// AddMessages records msgs of request requestID as Queued, or as Cancelled (processed now)
	// if the request was cancelled, and then reports cancelled. Messages already recorded keep
	// their status and fields; with no msgs it only reports cancelled. Messages marked Claimed
	// are recorded Processing (Cancelled all the same if the request is cancelled). It returns
	// ErrNotFound (wrapped) for a request never accepted.
	AddMessages(requestID string, msgs []NewMessage) (cancelled bool, err error)
	// Claim moves the messages at indexes from Queued to Processing and returns the indexes it
	// moved or that were already Processing (a redelivery), in ascending order. Cancelled and
	// terminal messages are never returned.
	Claim(requestID string, indexes []int) ([]int, error)
	// Finish records terminal outcomes, processed now. A message already terminal keeps its
	// first terminal status; a message not recorded is ignored; of several results for one
	// index the first wins. When this call completed the request (it moved messages to a
	// terminal status and now every message of the request is terminal) it returns the
	// request's Completion, else nil: of the writes to one request, exactly one that commits
	// reports it.
	Finish(requestID string, results []Result) (*Completion, error)
	// RecordParts records, for messages of request requestID, the outcome of part (a sink of a
	// record routed to several) and returns, for each of those messages, the outcomes of all its
	// parts recorded so far, this one included, in the order they were recorded. Recording a
	// part again keeps its first outcome, so a redelivery never counts twice.
	RecordParts(requestID, part string, results []Result) (map[int][]Result, error)
	// Replay moves the messages at indexes that are Failed or Invalid back to Queued (other
	// messages are left alone) and returns the indexes it moved, ascending. Their errors stay
	// visible: the outcome of the next attempt appends its errors to them. Their part outcomes
	// are forgotten.
	Replay(requestID string, indexes []int) ([]int, error)
	// Retrying records lastError as the retry error of the messages at indexes that are still
	// Processing: their delivery failed and will be tried again. Tracking shows it after their
	// other errors while they stay Processing (a later call replaces it); Finish drops it and
	// records the outcome's errors. Messages in any other status are left alone. It returns
	// ErrNotFound (wrapped) for a request never accepted.
	Retrying(requestID string, indexes []int, lastError string) error
}

// Store answers the Tracking API. It is safe for concurrent use.
type Store interface {
	// Find runs search f over the requests of client clientID (never any other client's). It
	// reads one consistent snapshot and returns ErrInvalidFilter (wrapped) for a filter it
	// cannot run.
	Find(ctx context.Context, clientID string, f Filter) (Page, error)
	// Cancel cancels request requestID of client clientID: messages recorded later are recorded
	// Cancelled and its Queued messages become Cancelled now. cancelled counts the messages this
	// call cancelled, including those not yet recorded. found is false, and nothing changes,
	// when clientID has no such request (another client's request looks missing).
	Cancel(ctx context.Context, clientID, requestID string) (found bool, cancelled int, err error)
}
