// range_test.go: the bounds that need the package's internals to test: the memory bound on
// Split's pieces, and the capi wrappers' refusal of integers C's 32 bits cannot hold where
// package autograd never passes one (flags, counts, statuses), as a backstop.

package autograd

import (
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"

	"libautograd.dev/autograd/internal/capi"
)

// A piece count the library takes (at most 2^31 - 1) whose pieces cannot fit in memory is
// ENoMem, before any allocation: the count passed to C, the handles' slice was made and C
// began making views until the machine ran out.
func TestSplitBeyondMemory(t *testing.T) {
	n := int64(memoryLimit()/pieceBytes) + 1
	if n > math.MaxInt32 {
		t.Skipf("this machine's memory (%d bytes) holds %d pieces", memoryLimit(), n-1)
	}
	one, err := Zeros(Float32, 1)
	if err != nil {
		t.Fatal(err)
	}
	big, err := one.Expand(n)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() ([]*Tensor, error){
		"Split": func() ([]*Tensor, error) { return big.Split(1, 0) },
		"Chunk": func() ([]*Tensor, error) { return big.Chunk(n, 0) },
	} {
		if p, err := f(); p != nil || !errors.Is(err, ENoMem) ||
			!strings.Contains(err.Error(), name+": ") {
			t.Errorf("%s into %d pieces: %d pieces, %v", name, n, len(p), err)
		}
	}
}

// Flags, a thread count and a status wider than C's 32 bits fail (or name no status) instead
// of being truncated: flags 1<<32 | AG_RETAIN_GRAPH ran backward retaining the graph.
func TestWrappersRefuseWideInts(t *testing.T) {
	x, err := FromSlice([]float32{1, 2})
	if err == nil {
		err = x.SetRequiresGrad(true)
	}
	if err != nil {
		t.Fatal(err)
	}
	var tp Tape
	s := tp.T(tp.T(x.Mul(x)).Sum())
	if tp.Err() != nil {
		t.Fatal(tp.Err())
	}
	r := capi.Ag_backward(s.c(), 0, 1<<32|capi.RetainGraph)
	runtime.KeepAlive(s)
	if r.Status != capi.EInval || r.Msg != "ag_backward: unknown flags 0x100000001" {
		t.Errorf("ag_backward with flags 1<<32 | RETAIN_GRAPH: %d %q", r.Status, r.Msg)
	}
	if g, err := x.Grad(); g != nil || err != nil {
		t.Errorf("a refused backward wrote .grad %v (%v)", g, err)
	}
	r = capi.Ag_grad(make([]capi.Tensor, 1), []capi.Tensor{s.c()}, nil, 1,
		[]capi.Tensor{x.c()}, 1<<40)
	runtime.KeepAlive(s)
	runtime.KeepAlive(x)
	if r.Status != capi.EInval || !strings.HasPrefix(r.Msg, "ag_grad: unknown flags") {
		t.Errorf("ag_grad with flags 1<<40: %d %q", r.Status, r.Msg)
	}

	before := capi.Ag_get_num_threads()
	r = capi.Ag_set_num_threads(1<<32 + 3)
	if r.Status != capi.EInval || !strings.HasPrefix(r.Msg, "ag_set_num_threads: 4294967299") ||
		capi.Ag_get_num_threads() != before {
		t.Errorf("ag_set_num_threads(1<<32 + 3): %d %q, threads %d -> %d", r.Status, r.Msg,
			before, capi.Ag_get_num_threads())
	}

	// (ag_set_error records for the calling thread: stay on it.)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	capi.Ag_set_error(1<<32|capi.EShape, "wide")
	if st := capi.Ag_last_status(); st == capi.EShape || st == capi.OK {
		t.Errorf("ag_set_error(1<<32 | AG_ESHAPE) recorded status %d", st)
	}
	capi.Ag_clear_error()
}
