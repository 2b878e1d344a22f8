// Command gotemplate_check parses, and optionally renders, Argo CD notification templates the way
// Argo CD's notifications-engine does: Go's text/template with Sprig's text function map, less env
// and expandenv (notifications-engine pkg/templates/service.go). Sprig is v3.2.3, the version
// notifications-engine pins, from Debian's golang-github-masterminds-sprig-dev. The tests build this in
// GOPATH mode against /usr/share/gocode, so nothing is downloaded; Debian keeps Sprig's v3 module at
// the unversioned import path, hence "github.com/Masterminds/sprig" below.
//
// stdin:  {"templates": {"<id>": "<template text>", ...}, "vars": <object or null>}
// stdout: {"<id>": {"parse": "<error>", "exec": "<error>", "output": "<rendered text>"}, ...}
//
// With "vars" null the templates are only parsed. A template that does not parse or render is a
// result, not a failure: the exit status is non-zero only for unreadable input.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"

	"github.com/Masterminds/sprig"
)

type input struct {
	Templates map[string]string      `json:"templates"`
	Vars      map[string]interface{} `json:"vars"`
}

type result struct {
	Parse  string `json:"parse"`
	Exec   string `json:"exec"`
	Output string `json:"output"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "gotemplate_check: unreadable input:", err)
		os.Exit(2)
	}
	funcs := sprig.TxtFuncMap()
	// notifications-engine removes these two: a template must not read the controller's environment.
	delete(funcs, "env")
	delete(funcs, "expandenv")

	results := map[string]result{}
	for id, text := range in.Templates {
		var r result
		parsed, err := template.New(id).Funcs(funcs).Parse(text)
		if err != nil {
			r.Parse = err.Error()
		} else if in.Vars != nil {
			var out bytes.Buffer
			if err := parsed.Execute(&out, in.Vars); err != nil {
				r.Exec = err.Error()
			}
			r.Output = out.String()
		}
		results[id] = r
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "gotemplate_check:", err)
		os.Exit(2)
	}
}
