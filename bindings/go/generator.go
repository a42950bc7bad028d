// generator.go: random number generators (Generator) and the default one's seed.

package autograd

import (
	"runtime"
	"sync"
	"sync/atomic"

	"libautograd.dev/autograd/internal/capi"
)

// Generator is a seedable random number generator (counter-based Philox4x32-10): the same
// seed gives the same numbers for any thread count. It may be shared between goroutines
// (draws are serialised).
type Generator struct {
	h       atomic.Uintptr
	cleanup runtime.Cleanup
}

func releaseGenerator(h uintptr) { capi.Ag_generator_release(capi.Generator(h)) }

// NewGenerator creates a generator seeded with seed.
func NewGenerator(seed uint64) (*Generator, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	r := capi.Ag_generator_new(seed)
	if err := errOf(r); err != nil {
		return nil, err
	}
	g := &Generator{}
	g.h.Store(r.Handle())
	g.cleanup = runtime.AddCleanup(g, releaseGenerator, r.Handle())
	return g, nil
}

// ManualSeed reseeds g, restarting its stream.
func (g *Generator) ManualSeed(seed uint64) error {
	if g == nil {
		return errorf(EInval, "ManualSeed: nil generator")
	}
	r := capi.Ag_generator_manual_seed(capi.Generator(g.h.Load()), seed)
	runtime.KeepAlive(g)
	if !r.OK() && g.h.Load() == 0 {
		r.Msg += " (a generator was used after Release)"
	}
	return errOf(r)
}

// Release drops the generator's reference now rather than at garbage collection.
func (g *Generator) Release() {
	if g == nil {
		return
	}
	if h := g.h.Swap(0); h != 0 {
		g.cleanup.Stop()
		releaseGenerator(h)
	}
}

// The library's default generator is per OS thread, and goroutines move between threads, so
// the package keeps one process-wide default instead: nil *Generator arguments use it.
var defaultGen struct {
	once sync.Once
	g    *Generator
	err  error
}

func defaultGenerator() (*Generator, error) {
	defaultGen.once.Do(func() { defaultGen.g, defaultGen.err = NewGenerator(0) })
	return defaultGen.g, defaultGen.err
}

// ManualSeed reseeds the package's default generator, which functions taking a nil
// *Generator draw from (like torch.manual_seed). It starts seeded with 0.
func ManualSeed(seed uint64) error {
	g, err := defaultGenerator()
	if err != nil {
		return err
	}
	return g.ManualSeed(seed)
}

// use returns the handle to draw from: g's, or the default generator's for nil.
func (g *Generator) use() (capi.Generator, error) {
	if g == nil {
		var err error
		if g, err = defaultGenerator(); err != nil {
			return 0, err
		}
	}
	h := capi.Generator(g.h.Load())
	if h == 0 {
		return 0, errorf(EInval, "a generator was used after Release")
	}
	return h, nil
}
