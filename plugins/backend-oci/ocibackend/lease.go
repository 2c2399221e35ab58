package ocibackend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mirrorkit/mirror/sdk"
)

// The writer lease. A registry has no lock and no compare-and-swap on tags:
// the last PUT of a tag wins. The lease is built from that alone (see
// docs/oci-layout.md for the argument):
//
//   - The lease NAME is a manifest on tag _lease-NAME naming a holder (a
//     random ID) and a renewal counter, so every write has a new digest.
//   - It is free when the tag is missing, names no holder (released), or has
//     kept one digest for a whole TTL as this process saw it (its holder
//     died). Expiry is judged by each waiter's own monotonic clock from the
//     moment it first saw that digest, so clocks need not agree.
//   - To take a free lease, write a claim, wait the settle delay, read it
//     back: the claim holds if the tag still has our digest. A claim whose
//     read-then-write took longer than the settle delay is given up: two
//     claimants can both read their own claim back only if one of them
//     wrote more than a settle delay after it read the lease free.
//   - The holder renews every third of the TTL, restoring its record if a
//     given-up claim overwrote it. If no renewal has landed for TTL minus a
//     margin it considers the lease lost, before any waiter can take it
//     over, and refuses to write from then on (ErrConflict).
//
// This is mutual exclusion among writers that take the lease, on a registry
// whose tags read back what was last written to them (distribution, and
// every single-primary registry). It is not fencing: a holder frozen longer
// than the TTL (a stopped VM) can write once more after others moved on.
// The core's commit point, the timestamp written with IfMatch, keeps even
// that from losing a version silently in all but the narrowest race.

// heldLease is a lease this process holds.
type heldLease struct {
	b      *Backend
	name   string
	tag    string
	holder string
	sem    chan struct{}

	mu       sync.Mutex
	seq      uint64
	digest   string    // of our last write
	lastGood time.Time // when the last write that landed was sent
	lost     error

	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	errOnce error
}

// owner says who holds a lease, for people reading the registry.
func owner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s pid %d", host, os.Getpid())
}

// checkLockName enforces the sdk's rule: one path element, no leading dot.
func checkLockName(name string) error {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, `/\`) || !fs.ValidPath(name) {
		return fmt.Errorf("lock %q: a lock name is one path element not starting with a dot: %w", name, fs.ErrInvalid)
	}
	return nil
}

// Lock takes the lease name, waiting until ctx is done. One holder per name
// in this process waits on the registry; the others queue here. The
// returned unlock releases the lease (it writes a released record) and may
// be called more than once; it reports an error if the lease was lost while
// held.
func (b *Backend) Lock(ctx context.Context, name string) (func() error, error) {
	if err := checkLockName(name); err != nil {
		return nil, err
	}
	if err := b.checkOpen("lock", name); err != nil {
		return nil, err
	}
	b.leaseMu.Lock()
	sem := b.sems[name]
	if sem == nil {
		sem = make(chan struct{}, 1)
		b.sems[name] = sem
	}
	b.leaseMu.Unlock()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("lock %s on %s: waiting for another writer of this process: %w", name, b.c.repo.Name(), ctx.Err())
	}
	h, err := b.acquire(ctx, name)
	if err != nil {
		<-sem
		return nil, err
	}
	h.sem = sem
	b.leaseMu.Lock()
	b.held[name] = h
	b.leaseMu.Unlock()
	go h.renew()
	return h.unlock, nil
}

// readLease returns the lease record under tag and its digest; digest is
// empty when there is none. A tag holding something else is reported as a
// lease of unknown holder, so it expires like any other.
func (b *Backend) readLease(ctx context.Context, tag string) (leaseRecord, string, error) {
	body, err := b.getManifest(ctx, tag)
	if errors.Is(err, sdk.ErrNotFound) {
		return leaseRecord{}, "", nil
	}
	if err != nil {
		return leaseRecord{}, "", err
	}
	rec, perr := parseLeaseManifest(body)
	if perr != nil {
		rec = leaseRecord{Holder: "unknown", Owner: "a foreign artifact on tag " + tag}
	}
	return rec, manifestDigest(body), nil
}

// pollInterval is how often a waiter looks at the lease: about the settle
// delay, jittered so waiters do not move in step.
func (b *Backend) pollInterval() time.Duration {
	return jitter(max(b.leaseSettle, 50*time.Millisecond))
}

// lostMargin is how long before a waiter could take the lease over that its
// holder gives it up.
func (b *Backend) lostMargin() time.Duration { return b.leaseTTL / 4 }

// acquire waits for the lease to be free and claims it.
func (b *Backend) acquire(ctx context.Context, name string) (*heldLease, error) {
	tag := leaseTag(name)
	holder := randomID()
	who := owner()
	var (
		seen      string    // digest being watched for expiry
		seenSince time.Time // when this process first saw it
		last      leaseRecord
	)
	waitErr := func(err error) error {
		if last.Holder != "" {
			return fmt.Errorf("lock %s on %s: held by %s: %w", name, b.c.repo.Name(), last.Owner, err)
		}
		return fmt.Errorf("lock %s on %s: %w", name, b.c.repo.Name(), err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, waitErr(err)
		}
		start := time.Now()
		rec, digest, err := b.readLease(ctx, tag)
		if err != nil {
			if ctx.Err() != nil {
				return nil, waitErr(ctx.Err())
			}
			return nil, fmt.Errorf("lock %s on %s: %w", name, b.c.repo.Name(), err)
		}
		last = rec
		if digest != seen {
			seen, seenSince = digest, start
		}
		// Our own holder ID in a record we did not verify (a claim given up
		// as too slow) is not free: it may have overwritten a holder's.
		free := digest == "" || rec.Holder == "" || time.Since(seenSince) >= b.leaseTTL
		if free {
			if rec.Holder != "" && digest != "" {
				b.log.Info("taking over an expired lease", "lease", name, "holder", rec.Owner, "unchanged for", time.Since(seenSince).Round(time.Millisecond))
			}
			claim := leaseRecord{Holder: holder, Seq: rec.Seq + 1, Owner: who, Expires: b.now().Add(b.leaseTTL)}
			body := leaseManifest(claim)
			mine := manifestDigest(body)
			if err := b.putManifest(ctx, tag, body); err != nil {
				if ctx.Err() != nil {
					b.abandonClaim(ctx, tag, mine, claim)
					return nil, waitErr(ctx.Err())
				}
				return nil, fmt.Errorf("lock %s on %s: %w", name, b.c.repo.Name(), err)
			}
			if time.Since(start) <= b.leaseSettle {
				if err := b.sleep(ctx, b.leaseSettle); err != nil {
					b.abandonClaim(ctx, tag, mine, claim)
					return nil, waitErr(err)
				}
				_, now, err := b.readLease(ctx, tag)
				if err != nil {
					b.abandonClaim(ctx, tag, mine, claim)
					if ctx.Err() != nil {
						return nil, waitErr(ctx.Err())
					}
					return nil, fmt.Errorf("lock %s on %s: %w", name, b.c.repo.Name(), err)
				}
				if now == mine {
					return &heldLease{
						b: b, name: name, tag: tag, holder: holder,
						seq: claim.Seq, digest: mine, lastGood: start,
						stop: make(chan struct{}), done: make(chan struct{}),
					}, nil
				}
			} else {
				b.log.Debug("lease claim too slow to trust; waiting", "lease", name, "took", time.Since(start))
			}
			// Someone else's claim landed after ours, or ours was too slow
			// to be sure of: watch the lease afresh.
			seen = ""
		}
		if err := b.sleep(ctx, b.pollInterval()); err != nil {
			return nil, waitErr(err)
		}
	}
}

// abandonClaim releases a claim a cancelled Lock wrote, if it is still
// there, so others need not wait for it to expire.
func (b *Backend) abandonClaim(ctx context.Context, tag, mine string, claim leaseRecord) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, d, err := b.readLease(ctx, tag); err == nil && d == mine {
		claim.Holder, claim.Seq = "", claim.Seq+1
		b.putManifest(ctx, tag, leaseManifest(claim))
	}
}

// renew keeps the lease until unlock: every third of the TTL it writes a
// new record, more often after a failure, and marks the lease lost when no
// write has landed for TTL minus the margin.
func (h *heldLease) renew() {
	b := h.b
	defer close(h.done)
	interval := b.leaseTTL / 3
	wait := interval
	for {
		t := time.NewTimer(wait)
		select {
		case <-h.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if err := h.renewOnce(interval); err != nil {
			h.mu.Lock()
			lost := h.lapsedLocked(err)
			h.mu.Unlock()
			if lost != nil {
				return
			}
			wait = interval / 4
			continue
		}
		wait = interval
	}
}

// renewOnce writes the next record, restoring it if another's given-up
// claim replaced it.
func (h *heldLease) renewOnce(timeout time.Duration) error {
	b := h.b
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	h.mu.Lock()
	if err := h.lapsedLocked(nil); err != nil {
		h.mu.Unlock()
		return err
	}
	rec := leaseRecord{Holder: h.holder, Seq: h.seq + 1, Owner: owner(), Expires: b.now().Add(b.leaseTTL)}
	h.mu.Unlock()
	_, cur, err := b.readLease(ctx, h.tag)
	if err != nil {
		return err
	}
	if cur != h.digest {
		b.log.Warn("lease record replaced while held; restoring it", "lease", h.name)
	}
	body := leaseManifest(rec)
	if err := b.putManifest(ctx, h.tag, body); err != nil {
		return err
	}
	h.mu.Lock()
	h.seq, h.digest, h.lastGood = rec.Seq, manifestDigest(body), start
	h.mu.Unlock()
	return nil
}

// healthy returns the error that stops writes once the lease is lost.
func (h *heldLease) healthy() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lapsedLocked(nil)
}

// lapsedLocked is the one judge of a lost lease: once no renewal has landed
// for TTL minus the margin, a waiter may soon take the lease over, so the
// lease is marked lost for good and every later write refused. It returns
// that error, or nil while the lease holds. cause is the failed renewal
// that found it, named in the message; nil when a write or a renewal's own
// check found it. h.mu must be held.
func (h *heldLease) lapsedLocked(cause error) error {
	if h.lost != nil {
		return h.lost
	}
	b := h.b
	since := time.Since(h.lastGood)
	if since < b.leaseTTL-b.lostMargin() {
		return nil
	}
	why := ""
	if cause != nil {
		why = fmt.Sprintf(" (%v)", cause)
	}
	h.lost = fmt.Errorf("the writer lease %s on %s lapsed: no renewal reached the registry for %v%s; nothing more is written, run again: %w",
		h.name, b.c.repo.Name(), since.Round(time.Second), why, sdk.ErrConflict)
	b.log.Error("lease lost", "lease", h.name, "error", cause)
	return h.lost
}

// heldLeases returns the leases this value holds now.
func (b *Backend) heldLeases() []*heldLease {
	b.leaseMu.Lock()
	defer b.leaseMu.Unlock()
	return slices.Collect(maps.Values(b.held))
}

// leaseHealthy fails a write when a lease this value holds was lost: the
// write could otherwise land beside another holder's.
func (b *Backend) leaseHealthy(op, key string) error {
	for _, h := range b.heldLeases() {
		if err := h.healthy(); err != nil {
			return fmt.Errorf("%s %s: %w", op, key, err)
		}
	}
	return nil
}

// unlock stops renewing and writes a released record, unless the tag no
// longer holds ours.
func (h *heldLease) unlock() error {
	h.once.Do(func() {
		b := h.b
		close(h.stop)
		<-h.done
		b.leaseMu.Lock()
		if b.held[h.name] == h {
			delete(b.held, h.name)
		}
		b.leaseMu.Unlock()
		defer func() { <-h.sem }()
		if err := h.healthy(); err != nil {
			h.errOnce = fmt.Errorf("unlock %s: %w", h.name, err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, cur, err := b.readLease(ctx, h.tag)
		if err != nil {
			h.errOnce = fmt.Errorf("unlock %s on %s: %w; the lease expires by itself in %v", h.name, b.c.repo.Name(), err, b.leaseTTL)
			return
		}
		if cur != h.digest {
			return
		}
		h.mu.Lock()
		rec := leaseRecord{Seq: h.seq + 1, Owner: owner(), Expires: b.now()}
		h.mu.Unlock()
		if err := b.putManifest(ctx, h.tag, leaseManifest(rec)); err != nil {
			h.errOnce = fmt.Errorf("unlock %s on %s: %w; the lease expires by itself in %v", h.name, b.c.repo.Name(), err, b.leaseTTL)
		}
	})
	return h.errOnce
}
