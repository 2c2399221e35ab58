package ocibackend_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mirrorkit/mirror/plugins/backend-oci/ocibackend"
	"github.com/mirrorkit/mirror/sdk"
)

// registries runs a test against the in-memory registry and, when it is
// installed, Debian's docker-registry; middleware (nil for none) sits in
// front of either.
func registries(t *testing.T, middleware func(http.Handler) http.Handler, run func(t *testing.T, host string)) {
	t.Run("in-memory registry", func(t *testing.T) { run(t, memRegistry(t, middleware)) })
	t.Run("docker-registry", func(t *testing.T) {
		host := realRegistry(t).Host()
		if middleware != nil {
			host = proxy(t, host, middleware)
		}
		run(t, host)
	})
}

// TestLeaseNoLostUpdates: 8 writers, each a Backend of its own as separate
// processes would be, increment one counter object by read-modify-write
// under Lock, with plain Puts (no IfMatch), so only the lease keeps them
// apart. Every increment must survive. A middleware delays lease writes at
// random, so claims race and some take longer than the settle delay (such a
// claim is given up, and the lease then waits out its TTL).
func TestLeaseNoLostUpdates(t *testing.T) {
	jitter := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/_lease-") {
				// Mostly quick; one write in eight slower than the settle
				// delay, which makes its claim untrustworthy.
				d := time.Duration(rand.IntN(20)) * time.Millisecond
				if rand.IntN(8) == 0 {
					d = 300 * time.Millisecond
				}
				time.Sleep(d)
			}
			next.ServeHTTP(w, r)
		})
	}
	registries(t, jitter, func(t *testing.T, host string) {
		const writers, increments = 8, 3
		opts := map[string]string{"lease-settle": "250ms", "lease-ttl": "3s"}
		addr := address(host, freshRepo("counter"))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var inside atomic.Int32 // writers inside the critical section at once
		var wg sync.WaitGroup
		for w := range writers {
			b := openBackend(t, addr, opts)
			wg.Go(func() {
				for i := range increments {
					unlock, err := b.Lock(ctx, "write")
					if err != nil {
						t.Errorf("writer %d: Lock: %v", w, err)
						return
					}
					if n := inside.Add(1); n != 1 {
						t.Errorf("writer %d: %d writers hold the lease at once", w, n)
					}
					n, err := readCounter(ctx, b)
					if err == nil {
						// Hold the lease longer than a claim takes to
						// settle, so a rival that ignored it would get in.
						time.Sleep(400 * time.Millisecond)
						_, err = b.Put(ctx, "counter", strings.NewReader(strconv.Itoa(n+1)), sdk.PutOptions{})
					}
					inside.Add(-1)
					if uerr := unlock(); uerr != nil {
						t.Errorf("writer %d: unlock: %v", w, uerr)
					}
					if err != nil {
						t.Errorf("writer %d increment %d: %v", w, i, err)
						return
					}
				}
			})
		}
		wg.Wait()
		got, err := readCounter(ctx, openBackend(t, addr, fastLease))
		if err != nil {
			t.Fatal(err)
		}
		if got != writers*increments {
			t.Errorf("counter = %d after %d increments: %d updates lost", got, writers*increments, writers*increments-got)
		}
	})
}

func readCounter(ctx context.Context, b sdk.Backend) (int, error) {
	rc, _, err := b.Get(ctx, "counter")
	if errors.Is(err, sdk.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(data))
}

// TestLeaseExclusion: a held lease keeps another Backend out for longer than
// its TTL (the holder renews it), and passes on promptly when released.
func TestLeaseExclusion(t *testing.T) {
	registries(t, nil, func(t *testing.T, host string) {
		addr := address(host, freshRepo("exclusion"))
		a, b := openBackend(t, addr, fastLease), openBackend(t, addr, fastLease)
		ctx := context.Background()
		unlock, err := a.Lock(ctx, "write")
		if err != nil {
			t.Fatal(err)
		}
		// 3s TTL: waiting 5s spans more than one, so only renewals keep it.
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if u, err := b.Lock(short, "write"); !errors.Is(err, context.DeadlineExceeded) {
			if u != nil {
				u()
			}
			t.Fatalf("second Lock while held = %v, want context.DeadlineExceeded", err)
		} else if !strings.Contains(err.Error(), "held by") {
			t.Errorf("the waiter's error does not say who holds the lease: %v", err)
		}
		// Writes under a held lease go through.
		if _, err := a.Put(ctx, "x", strings.NewReader("x"), sdk.PutOptions{}); err != nil {
			t.Fatalf("Put under the lease: %v", err)
		}
		got := make(chan error, 1)
		go func() {
			u, err := b.Lock(ctx, "write")
			if err == nil {
				err = u()
			}
			got <- err
		}()
		if err := unlock(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("Lock after release: %v", err)
			}
		case <-time.After(3 * time.Second): // well under the TTL: released, not expired
			t.Fatal("the released lease did not pass to the waiter")
		}
		// Another name is another lease.
		u, err := a.Lock(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		u2, err := b.Lock(ctx, "write")
		if err != nil {
			t.Fatal(err)
		}
		u()
		u2()
	})
}

// TestLeaseCrashedHolder: a plugin process holding the lease is killed; its
// lease is not taken over before the TTL, and is taken over after it.
func TestLeaseCrashedHolder(t *testing.T) {
	registries(t, nil, func(t *testing.T, host string) {
		addr := address(host, freshRepo("crash"))
		holder := pluginBackend(t, addr, fastLease)
		ctx := context.Background()
		if _, err := holder.Lock(ctx, "write"); err != nil {
			t.Fatal(err)
		}
		if err := holder.Kill(); err != nil {
			t.Fatal(err)
		}
		b := openBackend(t, addr, fastLease)
		early, cancel := context.WithTimeout(ctx, time.Second) // a third of the TTL
		defer cancel()
		if u, err := b.Lock(early, "write"); !errors.Is(err, context.DeadlineExceeded) {
			if u != nil {
				u()
			}
			t.Fatalf("Lock right after the holder died = %v, want to wait for expiry", err)
		}
		late, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		u, err := b.Lock(late, "write")
		if err != nil {
			t.Fatalf("Lock after the dead holder's TTL: %v", err)
		}
		if err := u(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLeaseLapse: a holder whose renewals stop reaching the registry gives
// the lease up before anyone else may take it, and refuses to write from
// then on.
func TestLeaseLapse(t *testing.T) {
	var block atomic.Bool
	blocker := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if block.Load() && strings.Contains(r.URL.Path, "/manifests/_lease-") {
				http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	host := memRegistry(t, blocker)
	b := openBackend(t, address(host, freshRepo("lapse")), fastLease)
	ctx := context.Background()
	unlock, err := b.Lock(ctx, "write")
	if err != nil {
		t.Fatal(err)
	}
	block.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := b.Put(ctx, "timestamp.json", strings.NewReader("{}"), sdk.PutOptions{})
		if errors.Is(err, sdk.ErrConflict) {
			if !strings.Contains(err.Error(), "lapsed") {
				t.Errorf("error does not say the lease lapsed: %v", err)
			}
			break
		}
		if err != nil {
			t.Fatalf("Put while renewals fail: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("writes still allowed 10s after renewals stopped landing (TTL 3s)")
		}
		time.Sleep(100 * time.Millisecond)
	}
	block.Store(false)
	if err := unlock(); !errors.Is(err, sdk.ErrConflict) {
		t.Errorf("unlock of a lapsed lease = %v, want ErrConflict", err)
	}
	// The lapsed holder can take the lease again like anyone.
	again, err := b.Lock(ctx, "write")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "timestamp.json", strings.NewReader("{}"), sdk.PutOptions{}); err != nil {
		t.Errorf("Put under a new lease: %v", err)
	}
	again()
}

func TestLockNames(t *testing.T) {
	b := openBackend(t, address(memRegistry(t, nil), freshRepo("names")), fastLease)
	for _, name := range []string{"", ".commit", "a/b", `a\b`, ".."} {
		if u, err := b.Lock(context.Background(), name); err == nil {
			u()
			t.Errorf("Lock(%q) succeeded", name)
		}
	}
	for _, name := range []string{"write", "mirror-1.x", strings.Repeat("n", 200)} {
		u, err := b.Lock(context.Background(), name)
		if err != nil {
			t.Errorf("Lock(%q): %v", name, err)
			continue
		}
		u()
	}
}

// TestLeaseVisible: the lease is an artifact anyone can read, naming its
// holder, and List never shows it.
func TestLeaseVisible(t *testing.T) {
	host := memRegistry(t, nil)
	repo := freshRepo("visible")
	b := openBackend(t, address(host, repo), fastLease)
	ctx := context.Background()
	u, err := b.Lock(ctx, "write")
	if err != nil {
		t.Fatal(err)
	}
	defer u()
	resp, err := http.Get(fmt.Sprintf("http://%s/v2/%s/manifests/_lease-write", host, repo))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), ocibackend.LeaseArtifactType) || !strings.Contains(string(body), ocibackend.AnnotationLeaseOwner) {
		t.Errorf("lease manifest %s", body)
	}
	n := 0
	if err := b.List(ctx, "", func(sdk.ObjectInfo) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("List with only a lease = %d keys, %v", n, err)
	}
}
