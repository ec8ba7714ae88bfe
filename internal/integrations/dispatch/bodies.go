package dispatch

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opengw/gateway/tracker"
)

// Event types of a client's own requests.
const (
	EventRequestAccepted  = "request:accepted"
	EventRequestCompleted = "request:completed"
)

// MessageEventType is the event type of messages that ended in status st: message:complete,
// message:failed, message:invalid or message:cancelled.
func MessageEventType(st tracker.Status) string { return "message:" + strings.ToLower(string(st)) }

// body is a webhook's JSON body.
type body struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      any    `json:"data"`
}

// encodeBody returns the body of a webhook of eventType that happened at at.
func encodeBody(eventType string, at time.Time, data any) ([]byte, error) {
	b, err := json.Marshal(body{Type: eventType, Timestamp: at.UTC().Format(time.RFC3339Nano), Data: data})
	if err != nil {
		return nil, fmt.Errorf("encode %s webhook: %w", eventType, err)
	}
	return b, nil
}

// acceptedData is the data of request:accepted.
type acceptedData struct {
	FeedID         string  `json:"feedId"`
	RequestID      string  `json:"requestId"`
	BatchReference *string `json:"batchReference"`
	Format         string  `json:"format"`
	Total          int     `json:"total"`
	ReceivedDate   string  `json:"receivedDate"`
}

// messagesData is the data of message:* webhooks: messages of one request that ended in the
// same status, in the shape of the Tracking API's payload items.
type messagesData struct {
	FeedID    string        `json:"feedId"`
	RequestID string        `json:"requestId"`
	Messages  []messageData `json:"messages"`
}

type messageData struct {
	ID                string         `json:"id"`
	Index             int            `json:"index"`
	ExternalReference *string        `json:"externalReference"`
	MessageStatus     tracker.Status `json:"messageStatus"`
	Errors            []errorData    `json:"errors"`
}

type errorData struct {
	ErrorMessage string `json:"errorMessage"`
}

// completedData is the data of request:completed: the Tracking API's request summary.
type completedData struct {
	FeedID               string      `json:"feedId"`
	RequestID            string      `json:"requestId"`
	BatchReference       *string     `json:"batchReference"`
	Format               string      `json:"format"`
	ReceivedDate         string      `json:"receivedDate"`
	RequestStatus        string      `json:"requestStatus"`
	MessageStatusSummary summaryData `json:"messageStatusSummary"`
}

type summaryData struct {
	Total      int `json:"total"`
	Queued     int `json:"queued"`
	Processing int `json:"processing"`
	Cancelled  int `json:"cancelled"`
	Failed     int `json:"failed"`
	Invalid    int `json:"invalid"`
	Complete   int `json:"complete"`
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Directory says which hubs each client owns and which clients each tenant has, as the
// gateway's configuration declares them.
type Directory struct {
	hubs    map[string][]string // client id -> hub ids
	clients map[string][]string // "country/tenant" -> client ids
}

// Client is one client's entry of a Directory.
type Client struct {
	ID      string
	Hubs    []string
	Tenants []string // "country/tenant"
}

// NewDirectory indexes clients.
func NewDirectory(clients []Client) *Directory {
	d := &Directory{hubs: map[string][]string{}, clients: map[string][]string{}}
	for _, c := range clients {
		d.hubs[c.ID] = slices.Clone(c.Hubs)
		for _, t := range c.Tenants {
			d.clients[t] = append(d.clients[t], c.ID)
		}
	}
	return d
}

// Hubs returns the hubs client owns.
func (d *Directory) Hubs(client string) []string { return d.hubs[client] }

// Clients returns the clients allowed for tenant.
func (d *Directory) Clients(tenant string) []string { return d.clients[tenant] }
