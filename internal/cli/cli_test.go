package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"b.yaml": "b", "a.yml": "a", "c.json": "c", "notes.txt": "x"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	files, err := readFiles([]string{dir, "-"}, strings.NewReader("stdin"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f.Name)+"="+f.Content)
	}
	if want := "a.yml=a b.yaml=b c.json=c <stdin>=stdin"; strings.Join(got, " ") != want {
		t.Errorf("files = %v, want %s (sorted, config files only, then stdin)", got, want)
	}
	if _, err := readFiles([]string{filepath.Join(dir, "missing.yaml")}, nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: err = %v, want one naming it", err)
	}
	empty := t.TempDir()
	if _, err := readFiles([]string{empty}, nil); err == nil || !strings.Contains(err.Error(), "no .yaml") {
		t.Errorf("empty dir: err = %v", err)
	}
}

func TestPrintResources(t *testing.T) {
	items := []json.RawMessage{
		json.RawMessage(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"default"},"spec":{"hosts":["reviews"],"gateways":["mesh"]}}`),
		json.RawMessage(`{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"gw","namespace":"istio-system"},"spec":{"servers":[{"hosts":["a.example.com","b.example.com"]}]}}`),
	}
	var table bytes.Buffer
	if err := printResources(&table, items, "", false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAMESPACE", "reviews", "mesh", "a.example.com,b.example.com"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var y bytes.Buffer
	if err := printResources(&y, items[:1], "yaml", true); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(y.String(), "apiVersion: networking.istio.io/v1\nkind: VirtualService\n") {
		t.Errorf("yaml of one resource:\n%s", y.String())
	}
	var list bytes.Buffer
	printResources(&list, items, "json", false)
	if !strings.Contains(list.String(), `"kind": "List"`) {
		t.Errorf("json of several resources is not a List:\n%s", list.String())
	}
	if err := printResources(&list, items, "xml", false); err == nil {
		t.Error("output format xml was accepted")
	}
}

func TestUnknownCommandExitsNonZero(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"aply"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("weft aply: code %d, stderr %q", code, errb.String())
	}
}
