package transports

import (
	"net/http"
	"slices"
	"strings"
)

// formatOut is one entry of GET /api/v1/formats.
type formatOut struct {
	Format         string `json:"format"`
	MappingVersion string `json:"mappingVersion"`
}

// formats is GET /api/v1/formats: the formats the caller may push, each with the version of
// the mapping now loaded for it, sorted by name. Formats assigned to the client but defined by
// no loaded mapping are left out (start-up refuses such a configuration; a hot reload cannot
// remove a mapping that is assigned). The console's playground lists them; partners may too.
func (s *Server) formats(w http.ResponseWriter, _ *http.Request, p Principal) {
	set := s.Mappings()
	out := make([]formatOut, 0, len(p.Formats))
	for _, f := range p.Formats {
		if m, ok := set.Get(f); ok {
			out = append(out, formatOut{Format: f, MappingVersion: m.Version})
		}
	}
	slices.SortFunc(out, func(a, b formatOut) int { return strings.Compare(a.Format, b.Format) })
	writeJSON(w, http.StatusOK, map[string][]formatOut{"formats": out})
}
