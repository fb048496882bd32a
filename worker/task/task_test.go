package task

import (
	"errors"
	"strings"
	"testing"
)

type fuzzArgs struct {
	Name  string   `json:"name"`
	N     int64    `json:"n"`
	Sizes []int    `json:"sizes"`
	Ratio *float64 `json:"ratio"`
}

// FuzzStrictDecode: any payload decodes or is refused with an *InvalidError whose
// message names no Go type; nothing panics.
func FuzzStrictDecode(f *testing.F) {
	for _, seed := range []string{``, `{}`, `null`, `[]`, `{"name":"x","n":3,"sizes":[1,2]}`, `{"n":"x"}`,
		`{"sizes":{"a":1}}`, `{"extra":1}`, `{"name":"x"} {}`, `{"ratio":1e400}`, `{"n":9223372036854775808}`, "\x00", `{"name":"\ud800"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		var a fuzzArgs
		err := StrictDecode(payload, &a)
		if err == nil {
			return
		}
		var ie *InvalidError
		if !errors.As(err, &ie) || !strings.HasPrefix(ie.Field, "payload") {
			t.Fatalf("%q: %T %v", payload, err, err)
		}
		if strings.Contains(err.Error(), "task.") || strings.Contains(err.Error(), "int64") || strings.Contains(err.Error(), "Go ") {
			t.Fatalf("%q: message names a Go type: %v", payload, err)
		}
	})
}
