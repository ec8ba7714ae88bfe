package pipeline

import (
	"encoding/json"

	"github.com/opengw/gateway/mappings"
)

// DryRunRecord is what one record would become, without anything being queued or delivered.
type DryRunRecord struct {
	Index             int             `json:"index"`
	ExternalReference string          `json:"externalReference,omitempty"`
	MessageType       string          `json:"messageType,omitempty"`
	Valid             bool            `json:"valid"`
	Route             string          `json:"route,omitempty"`
	Sink              string          `json:"sink,omitempty"`
	Fields            json.RawMessage `json:"fields,omitempty"` // what the sink would receive, in mapping order
	Errors            []string        `json:"errors,omitempty"` // why the record is invalid
}

// DryRunResult is a whole dry run of one envelope.
type DryRunResult struct {
	Format         string         `json:"format"`
	MappingVersion string         `json:"mappingVersion"`
	Records        []DryRunRecord `json:"records"`
}

// DryRun maps every record with m exactly as the pipeline would, and reports the outcomes.
func DryRun(m *mappings.Mapping, records [][]byte) DryRunResult {
	out := DryRunResult{Format: m.Format, MappingVersion: m.Version, Records: make([]DryRunRecord, len(records))}
	for i, rec := range records {
		o := m.Apply(rec)
		d := DryRunRecord{Index: i, ExternalReference: m.RecordID(rec), MessageType: m.RecordType(rec), Valid: o.Valid()}
		if d.Valid {
			d.Route, d.Sink, d.Fields = o.Route, o.Sink, o.JSON()
		} else {
			d.Errors = o.Errors
		}
		out.Records[i] = d
	}
	return out
}
