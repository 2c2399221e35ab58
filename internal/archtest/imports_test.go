package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mirrorkit/mirror"

const cobra = "github.com/spf13/cobra"

// pkg is the part of `go list -json` output the rules read.
type pkg struct {
	ImportPath   string
	Standard     bool
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// pluginAllowed are the module packages a plugin may import, besides its
// own subtree; pluginTestAllowed are the extra ones its tests may import
// to run conformance suites across the real boundary, and against a real
// registry (internal/testregistry starts one; it is test-only).
var (
	pluginAllowed     = []string{"sdk", "sdk/serve", "core/manifest", "core/keys"}
	pluginTestAllowed = []string{"sdk/sdktest", "sdk/plugintest", "sdk/host", "internal/testregistry"}
)

// rel returns path relative to the module and whether it is in the module.
func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// under reports whether rel path p is dir or inside it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// pluginRoot returns "plugins/NAME" for a path inside a plugin.
func pluginRoot(p string) string {
	parts := strings.SplitN(p, "/", 3)
	if len(parts) < 2 || parts[0] != "plugins" {
		return ""
	}
	return parts[0] + "/" + parts[1]
}

// violations lists every import in pkgs that breaks a rule. isStd says
// whether an import path is in the standard library.
func violations(pkgs []pkg, isStd func(string) bool) []string {
	var out []string
	for _, p := range pkgs {
		from, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		check := func(imp string, test bool) {
			if v := rule(from, imp, test, isStd); v != "" {
				out = append(out, fmt.Sprintf("%s imports %s: %s", from, imp, v))
			}
		}
		for _, imp := range p.Imports {
			check(imp, false)
		}
		for _, imp := range slices.Concat(p.TestImports, p.XTestImports) {
			check(imp, true)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// rule returns why from may not import imp, or "" if it may.
func rule(from, imp string, test bool, isStd func(string) bool) string {
	to, internal := rel(imp)
	isCobra := imp == cobra || strings.HasPrefix(imp, cobra+"/")
	switch {
	case isCobra && !under(from, "cmd"):
		return "cobra belongs under cmd/ only"
	case from == "sdk" && !test && !isStd(imp):
		return "sdk imports only the standard library"
	case under(from, "sdk") && internal && (under(to, "core") || under(to, "plugins")):
		return "nothing under sdk/ imports core/ or plugins/"
	case under(from, "sdk/sdktest") && !isStd(imp) && !(internal && (to == "sdk" || under(to, "sdk/sdktest"))):
		// Plugin authors put the suites in their tests; they must pull in
		// nothing a plugin does not already depend on.
		return "sdk/sdktest imports only the standard library and sdk"
	case under(from, "core") && internal && under(to, "plugins") && !test:
		// Tests may use a real plugin implementation as a fixture: that does
		// not couple the shipped code.
		return "core reaches plugins only through the plugin protocol"
	case under(from, "core") && internal && under(to, "sdk/internal"):
		return "core never imports sdk/internal"
	case pluginRoot(from) != "" && internal && !under(to, pluginRoot(from)):
		allowed := slices.Contains(pluginAllowed, to) || test && slices.Contains(pluginTestAllowed, to)
		if !allowed {
			return fmt.Sprintf("a plugin imports only %s and its own packages", strings.Join(pluginAllowed, ", "))
		}
	}
	return ""
}

// goList runs `go list -e -deps -json ./...` at the module root: the
// module's packages with their imports, plus every dependency with its
// Standard flag.
func goList(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	cmd := exec.Command("go", "list", "-e", "-deps", "-json=ImportPath,Standard,Imports,TestImports,XTestImports", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	pkgs := goList(t)
	std := map[string]bool{}
	ours := 0
	for _, p := range pkgs {
		std[p.ImportPath] = p.Standard
		if _, ok := rel(p.ImportPath); ok {
			ours++
		}
	}
	if ours == 0 {
		t.Fatal("go list found none of the module's packages")
	}
	isStd := func(path string) bool {
		if s, ok := std[path]; ok {
			return s
		}
		// A package go list could not load: only the standard library has
		// no dot in its first path element.
		first, _, _ := strings.Cut(path, "/")
		return !strings.Contains(first, ".")
	}
	for _, v := range violations(pkgs, isStd) {
		t.Error(v)
	}
}

func TestRulesCatchViolations(t *testing.T) {
	m := func(p string) string { return module + "/" + p }
	isStd := func(path string) bool {
		first, _, _ := strings.Cut(path, "/")
		return !strings.Contains(first, ".")
	}
	tests := []struct {
		name string
		pkgs []pkg
		want []string // substrings, one per expected violation
	}{
		{
			name: "clean graph",
			pkgs: []pkg{
				{ImportPath: m("sdk"), Imports: []string{"context", "io/fs"}, TestImports: []string{"github.com/google/go-cmp/cmp"}},
				{ImportPath: m("sdk/serve"), Imports: []string{m("sdk"), m("sdk/internal/wire"), "github.com/hashicorp/go-plugin"}},
				{ImportPath: m("sdk/host"), Imports: []string{m("sdk"), m("sdk/internal/wire")}, TestImports: []string{m("sdk/serve")}},
				{ImportPath: m("core/pluginhost"), Imports: []string{m("sdk"), m("sdk/host")}, TestImports: []string{m("sdk/serve")}},
				{ImportPath: m("sdk/sdktest"), Imports: []string{"testing", m("sdk")}, XTestImports: []string{m("sdk"), m("sdk/sdktest")}},
				{ImportPath: m("core/mirror"), Imports: []string{m("core/repo"), m("core/pluginhost")}},
				{ImportPath: m("plugins/backend-fs"), Imports: []string{m("plugins/backend-fs/fsbackend"), m("sdk/serve")}},
				{ImportPath: m("plugins/backend-fs/fsbackend"), Imports: []string{m("sdk"), m("core/manifest"), "golang.org/x/sys/unix"}, XTestImports: []string{m("sdk/sdktest"), m("sdk/host")}},
				{ImportPath: m("plugins/signer-local/localsigner"), Imports: []string{m("sdk"), m("core/keys")}},
				{ImportPath: m("cmd/mirror/internal/cli"), Imports: []string{cobra, m("plugins/backend-fs/fsbackend"), m("core/mirror")}},
				{ImportPath: "github.com/other/thing", Imports: []string{cobra, m("plugins/x")}},
			},
		},
		{
			name: "sdk imports a third-party library",
			pkgs: []pkg{{ImportPath: m("sdk"), Imports: []string{"context", "github.com/hashicorp/go-hclog"}}},
			want: []string{"sdk imports github.com/hashicorp/go-hclog: sdk imports only the standard library"},
		},
		{
			name: "sdk imports its own subpackage",
			pkgs: []pkg{{ImportPath: m("sdk"), Imports: []string{m("sdk/internal/wire")}}},
			want: []string{"sdk imports only the standard library"},
		},
		{
			name: "sdk subpackage imports core",
			pkgs: []pkg{{ImportPath: m("sdk/host"), Imports: []string{m("core/manifest")}}},
			want: []string{"sdk/host imports " + m("core/manifest")},
		},
		{
			name: "sdk test imports a plugin",
			pkgs: []pkg{{ImportPath: m("sdk/sdktest"), XTestImports: []string{m("plugins/backend-fs/fsbackend")}}},
			want: []string{"nothing under sdk/ imports core/ or plugins/"},
		},
		{
			name: "sdktest imports a third-party library",
			pkgs: []pkg{{ImportPath: m("sdk/sdktest"), Imports: []string{"testing", "github.com/google/go-cmp/cmp"}}},
			want: []string{"sdk/sdktest imports github.com/google/go-cmp/cmp: sdk/sdktest imports only the standard library and sdk"},
		},
		{
			name: "sdktest test imports the host",
			pkgs: []pkg{{ImportPath: m("sdk/sdktest"), XTestImports: []string{m("sdk/host")}}},
			want: []string{"sdk/sdktest imports " + m("sdk/host") + ": sdk/sdktest imports only"},
		},
		{
			name: "core imports a plugin",
			pkgs: []pkg{{ImportPath: m("core/mirror"), Imports: []string{m("plugins/backend-fs/fsbackend")}}},
			want: []string{"core reaches plugins only through the plugin protocol"},
		},
		{
			name: "core test uses a plugin as a fixture",
			pkgs: []pkg{{ImportPath: m("core/publish"), TestImports: []string{m("plugins/backend-fs/fsbackend")}}},
		},
		{
			name: "core imports cobra",
			pkgs: []pkg{{ImportPath: m("core/mirror"), Imports: []string{cobra + "/doc"}}},
			want: []string{"cobra belongs under cmd/ only"},
		},
		{
			name: "core imports sdk/internal",
			pkgs: []pkg{{ImportPath: m("core/pluginhost"), TestImports: []string{m("sdk/internal/wire")}}},
			want: []string{"core never imports sdk/internal"},
		},
		{
			name: "plugin imports another plugin",
			pkgs: []pkg{{ImportPath: m("plugins/backend-oci/ocibackend"), Imports: []string{m("plugins/backend-fs/fsbackend")}}},
			want: []string{"plugins/backend-oci/ocibackend imports " + m("plugins/backend-fs/fsbackend") + ": a plugin imports only"},
		},
		{
			name: "plugin imports core beyond manifest and keys",
			pkgs: []pkg{{ImportPath: m("plugins/backend-fs"), Imports: []string{m("core/repo"), m("sdk/host")}}},
			want: []string{"plugins/backend-fs imports " + m("core/repo"), "plugins/backend-fs imports " + m("sdk/host")},
		},
		{
			name: "cobra outside cmd",
			pkgs: []pkg{{ImportPath: m("internal/flags"), Imports: []string{cobra}}},
			want: []string{"internal/flags imports " + cobra},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := violations(tt.pkgs, isStd)
			if len(got) != len(tt.want) {
				t.Fatalf("violations = %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
