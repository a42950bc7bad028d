// Command go-bench runs the `mlp` and `scalar` workloads (docs/workloads.md) from Go,
// written as a Go user would with package autograd, with the same procedure and output as
// bench/bench.c, so that bench/run can set the binding's cost against C's.
//
//	go-bench mlp|scalar [--threads 1,2] [--reps R] [--warmup W]
//
// bench/run builds it with PKG_CONFIG_PATH pointing at the build tree's
// pkgconfig-uninstalled/.
package main

import (
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	ag "libautograd.dev/autograd"
)

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func check[T any](v T, err error) T {
	must(err)
	return v
}

// measure runs rep after warm-up, the thread counts interleaved within each repetition; a
// sample is seconds * scale. It prints one result line per thread count.
func measure(name, unit string, scale float64, threads []int, reps, warmup int, rep func()) {
	samples := make([][]float64, len(threads))
	for r := -warmup; r < reps; r++ {
		for i, t := range threads {
			must(ag.SetNumThreads(t))
			t0 := time.Now()
			rep()
			s := time.Since(t0).Seconds()
			if r >= 0 {
				samples[i] = append(samples[i], s*scale)
			}
		}
	}
	for i, t := range threads {
		strs := make([]string, len(samples[i]))
		for j, v := range samples[i] {
			strs[j] = strconv.FormatFloat(v, 'g', 6, 64)
		}
		fmt.Printf("result go %s threads=%d unit=%s median=%.6g samples=%s\n", name, t, unit,
			median(samples[i]), strings.Join(strs, ","))
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return 0.5 * (s[n/2-1] + s[n/2])
}

// uniform is torch.nn.Linear's initialisation: uniform in +-1/sqrt(fanIn).
func uniform(g *ag.Generator, fanIn int64, shape ...int64) *ag.Tensor {
	u := check(ag.Rand(g, ag.Float32, shape...))
	defer u.Release()
	c := check(u.SubScalar(0.5))
	defer c.Release()
	p := check(c.MulScalar(2 / math.Sqrt(float64(fanIn))))
	must(p.SetRequiresGrad(true))
	return p
}

const mlpInner = 10 // steps per repetition, as bench.c

// mlp: 784-512-256-10 ReLU, batch 128, cross-entropy, SGD lr 0.01; one step = zero_grad,
// forward, loss, backward, optimizer step.
func mlp(threads []int, reps, warmup int) {
	g := check(ag.NewGenerator(0))
	sizes := []int64{784, 512, 256, 10}
	var params []*ag.Tensor
	for l := 0; l < 3; l++ {
		params = append(params, uniform(g, sizes[l], sizes[l+1], sizes[l]),
			uniform(g, sizes[l], sizes[l+1]))
	}
	x := check(ag.Randn(g, ag.Float32, 128, 784))
	y := check(ag.Randint(g, 0, 10, ag.Int64, 128))
	opt := check(ag.NewSGD(params, 0.01))

	step := func() {
		var tp ag.Tape
		defer tp.Release()
		tp.Check(opt.ZeroGrad(true))
		h := tp.T(tp.T(x.Linear(params[0], params[1])).Relu())
		h = tp.T(tp.T(h.Linear(params[2], params[3])).Relu())
		loss := tp.T(tp.T(h.Linear(params[4], params[5])).CrossEntropy(y))
		tp.Check(loss.Backward())
		tp.Check(opt.Step())
		must(tp.Err())
	}
	measure("mlp", "ms", 1e3/mlpInner, threads, reps, warmup, func() {
		for i := 0; i < mlpInner; i++ {
			step()
		}
	})
}

const scalarN = 20000

// scalar: 20000 triples of 0-d leaves, s = sum_i tanh(a_i * b_i + c_i) by s = s + ..., then
// s.Backward(). Timed: creating the leaves, forward, backward, releasing everything.
func scalar(threads []int, reps, warmup int) {
	g := check(ag.NewGenerator(0))
	vals := check(check(ag.Randn(g, ag.Float32, 3*scalarN)).Float64s())
	leaves := make([]*ag.Tensor, 3*scalarN)
	// As bench.c does it: each intermediate is released as soon as the next operation has
	// used it (the graph keeps what backward needs), as Python's reference counting does in
	// torch_bench.py; the leaves are released after backward.
	rep := func() {
		s := check(ag.Scalar(0, ag.Float32))
		for i := 0; i < scalarN; i++ {
			for j := 0; j < 3; j++ {
				// torch.tensor(v, requires_grad=True), as torch_bench.py makes them
				l := check(ag.ScalarRequiresGrad(vals[3*i+j], ag.Float32, true))
				leaves[3*i+j] = l
			}
			a, b, c := leaves[3*i], leaves[3*i+1], leaves[3*i+2]
			p := check(a.Mul(b))
			q := check(p.Add(c))
			r := check(q.Tanh())
			s2 := check(s.Add(r))
			p.Release()
			q.Release()
			r.Release()
			s.Release()
			s = s2
		}
		must(s.Backward())
		s.Release()
		for _, l := range leaves {
			l.Release()
		}
	}
	measure("scalar", "ns_per_node", 1e9/(4*scalarN), threads, reps, warmup, rep)
}

func main() {
	// One goroutine drives the library here: keep it on one OS thread, as the Go binding's
	// README advises for compute-heavy callers (OpenMP keeps a worker team per calling OS
	// thread, and a goroutine that migrates would wake several).
	runtime.LockOSThread()
	log.SetFlags(0)
	log.SetPrefix("go-bench: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: go-bench mlp|scalar [--threads 1,2] [--reps R] [--warmup W]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	threadList := fs.String("threads", strconv.Itoa(ag.NumThreads()), "thread counts to try")
	reps := fs.Int("reps", 5, "timed repetitions")
	warmup := fs.Int("warmup", 1, "warm-up repetitions")
	must(fs.Parse(os.Args[2:]))
	var threads []int
	for _, s := range strings.Split(*threadList, ",") {
		threads = append(threads, check(strconv.Atoi(s)))
	}
	switch os.Args[1] {
	case "mlp":
		mlp(threads, *reps, *warmup)
	case "scalar":
		scalar(threads, *reps, *warmup)
	default:
		log.Fatalf("unknown workload %q", os.Args[1])
	}
}
