// pacing_test.go: tensors dropped without Release are reclaimed while the program runs
// (pacing.go's collector hints), not only at exit.

package autograd

import (
	"runtime"
	"testing"

	"libautograd.dev/autograd/internal/capi"
)

// A loop that drops 1 MiB tensors without Release stays bounded: the package collects when
// the library's memory in use doubles (pacing.go). Without the pacing the Go heap hardly
// grows, no collection runs, and the loop holds all 2 GiB.
func TestDroppedTensorsArePaced(t *testing.T) {
	runtime.GC()
	runtime.GC() // (the cleanups of earlier tests' tensors)
	start := capi.Ag_memory_in_use()
	peak := start
	for i := 0; i < 1024; i++ {
		x, err := Zeros(Float32, 256, 1024) // 1 MiB, dropped
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.AddScalar(1); err != nil { // and another
			t.Fatal(err)
		}
		if r := capi.Ag_memory_in_use(); r > peak {
			peak = r
		}
	}
	if grown := peak - start; grown > 256<<20 {
		t.Fatalf("the library's memory grew by %d MiB for 2 GiB of tensors dropped 2 MiB at a "+
			"time", grown>>20)
	}
}
