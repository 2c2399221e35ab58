package host

import (
	"os"
	"path/filepath"
	"testing"
)

// The plugin connection runs without TLS, which is sound only because its
// Unix socket sits in a directory no other user can enter: check that,
// and that the directory goes away with the plugin.
func TestPluginSocketIsPrivate(t *testing.T) {
	b := startBackend(t)
	p, ok := b.c.proc.(subprocess)
	if !ok {
		t.Fatalf("startBackend gave a %T, want a subprocess", b.c.proc)
	}
	rc := p.client.ReattachConfig()
	if rc == nil || rc.Addr == nil || rc.Addr.Network() != "unix" {
		t.Fatalf("plugin address %v, want a Unix socket", rc)
	}
	if rc.Test || p.client.NegotiatedVersion() == 0 {
		t.Fatalf("unexpected reattach config %+v", rc)
	}
	dir := filepath.Dir(rc.Addr.String())
	if dir != filepath.Clean(p.sockDir) {
		t.Fatalf("socket %s is not in the private directory %s", rc.Addr, p.sockDir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Fatalf("socket directory %s has mode %v, want 0700", dir, perm)
	}
	b.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("socket directory %s still there after Close: %v", dir, err)
	}
}
