package mappings

import "encoding/json"

// DryRunRecord is what one record would become, without anything being queued or delivered.
type DryRunRecord struct {
	Index             int           `json:"index"`
	ExternalReference string        `json:"externalReference,omitempty"`
	MessageType       string        `json:"messageType,omitempty"`
	Valid             bool          `json:"valid"`
	Routes            []DryRunRoute `json:"routes,omitempty"` // every route that takes the record
	Errors            []string      `json:"errors,omitempty"` // why the record is invalid
}

// DryRunRoute is one route that takes a record and what its sink would receive.
type DryRunRoute struct {
	Route  string          `json:"route"`
	Sink   string          `json:"sink"`
	Fields json.RawMessage `json:"fields"` // in mapping order
}

// DryRunResult is a whole dry run of one envelope.
type DryRunResult struct {
	Format         string         `json:"format"`
	MappingVersion string         `json:"mappingVersion"`
	Records        []DryRunRecord `json:"records"`
}

// DryRun applies the mapping to every record exactly as the pipeline does and reports, per
// record, every route that takes it with what its sink would receive, or why it is invalid.
// It is what `gateway map` prints and POST /push?dry_run=true answers. Safe for concurrent use.
func (m *Mapping) DryRun(records [][]byte) DryRunResult {
	out := DryRunResult{Format: m.Format, MappingVersion: m.Version, Records: make([]DryRunRecord, len(records))}
	for i, rec := range records {
		o := m.Apply(rec)
		d := DryRunRecord{Index: i, ExternalReference: m.RecordID(rec), MessageType: m.RecordType(rec), Valid: o.Valid(), Errors: o.Errors}
		for _, r := range o.Routes {
			d.Routes = append(d.Routes, DryRunRoute{Route: r.Route, Sink: r.Sink, Fields: r.JSON()})
		}
		out.Records[i] = d
	}
	return out
}
