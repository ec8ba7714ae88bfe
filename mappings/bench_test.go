package mappings

import "testing"

// callRecord is the call record of seed 000.
var callRecord = []byte(`{
  "id": "02784e36-e70f4c86595b",
  "type": "call",
  "timestamp": "2020-05-18T21:15:00-5:00",
  "duration": "PT25M30S",
  "user_email": "jonny.test@mivation.com",
  "contact": "+18774289403",
  "direction": "outbound"
}`)

// BenchmarkApply maps the seed's call record with the shipped activity mapping: required
// paths, one rule, one route condition and six fields.
func BenchmarkApply(b *testing.B) {
	m := mustLoadFile(b, "../examples/mappings/activity.yaml")
	if out := m.Apply(callRecord); !out.Valid() {
		b.Fatalf("invalid: %q", out.Errors)
	}
	b.ReportAllocs()
	for b.Loop() {
		m.Apply(callRecord)
	}
}

// BenchmarkApplyParallel is BenchmarkApply from GOMAXPROCS goroutines, to show the pooled
// VMs do not contend.
func BenchmarkApplyParallel(b *testing.B) {
	m := mustLoadFile(b, "../examples/mappings/activity.yaml")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Apply(callRecord)
		}
	})
}

// BenchmarkApplyJSON adds encoding the fields, which a sink does next.
func BenchmarkApplyJSON(b *testing.B) {
	m := mustLoadFile(b, "../examples/mappings/activity.yaml")
	b.ReportAllocs()
	for b.Loop() {
		m.Apply(callRecord).Routes[0].JSON()
	}
}
