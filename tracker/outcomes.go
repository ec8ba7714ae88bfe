package tracker

import (
	"encoding/json"
	"fmt"
)

// OutcomeGroup is a set of messages given the same outcome: the same terminal status, errors
// and mapping version.
type OutcomeGroup struct {
	Status         Status
	Errors         string // the errors as a JSON array, "" if none
	MappingVersion string
	Indexes        []int // in the order given
}

// GroupOutcomes groups results by outcome, in the order of each outcome's first result, for
// backends that record one group with one statement (typically a whole delivery Complete). Of
// several results for one index the first counts; a status that is not terminal is an error.
func GroupOutcomes(results []Result) ([]*OutcomeGroup, error) {
	byKey := map[string]*OutcomeGroup{}
	var groups []*OutcomeGroup
	seen := make(map[int]struct{}, len(results))
	for _, r := range results {
		if !r.Status.Terminal() {
			return nil, fmt.Errorf("status %q of message %d is not terminal", r.Status, r.Index)
		}
		if _, dup := seen[r.Index]; dup {
			continue
		}
		seen[r.Index] = struct{}{}
		errs := ""
		if len(r.Errors) > 0 {
			b, err := json.Marshal(r.Errors)
			if err != nil {
				return nil, fmt.Errorf("encode errors of message %d: %w", r.Index, err)
			}
			errs = string(b)
		}
		key := string(r.Status) + "\x00" + r.MappingVersion + "\x00" + errs
		g := byKey[key]
		if g == nil {
			g = &OutcomeGroup{Status: r.Status, Errors: errs, MappingVersion: r.MappingVersion}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.Indexes = append(g.Indexes, r.Index)
	}
	return groups, nil
}
