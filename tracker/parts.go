package tracker

// Part outcomes: a record routed to several sinks (routes_mode: all) is one message with one
// part per sink. Each sink's delivery records its part (Writer.RecordParts); the message reaches
// its terminal status, through Finish, once every part has an outcome: Complete if all parts
// are, otherwise Failed with every failed part's errors (FinishedParts).

// FinishedParts combines the outcomes of all of a message's parts into its terminal result:
// Complete when every part is Complete, otherwise Failed with the errors of every part that is
// not, in the order given.
func FinishedParts(index int, parts []Result) Result {
	out := Result{Index: index, Status: Complete}
	for _, p := range parts {
		if p.MappingVersion != "" {
			out.MappingVersion = p.MappingVersion
		}
		if p.Status != Complete {
			out.Status = Failed
			out.Errors = append(out.Errors, p.Errors...)
		}
	}
	return out
}
