package tracker

import (
	"encoding/json"
	"testing"
)

func TestValidUTF8(t *testing.T) {
	// Each invalid byte is replaced on its own; valid text is kept as it is.
	in := "a\"b\n\x01é\xff\xfe!"
	if got, want := ValidUTF8(in), "a\"b\n\x01é\ufffd\ufffd!"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	// As encoding/json decodes the bytes a partner sends in a search: what was stored is found.
	var searched string
	if err := json.Unmarshal([]byte("\"é\xff\xfe!\""), &searched); err != nil || searched != ValidUTF8("é\xff\xfe!") {
		t.Fatalf("encoding/json decoded %q (%v)", searched, err)
	}
}
