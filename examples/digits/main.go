// Command digits trains a 64-128-10 ReLU network on the 8x8 handwritten digits
// (data/digits.csv.gz) with the full loop (zero_grad, forward, loss, backward, step) and
// reports test accuracy. It follows examples/digits.c step by step, with the same shuffle and
// seeds, so it prints the same numbers (the times aside).
//
// usage: go run ./digits [path/to/digits.csv.gz]
package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"libautograd.dev/autograd"
	"libautograd.dev/autograd/nn"
)

const (
	rows, pixels, classes, train, hidden, epochs, batch = 1797, 64, 10, 1500, 128, 60, 32
)

func check(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "digits: %s failed: %v\n", what, err)
		os.Exit(1)
	}
}

// The shuffle: a 64-bit LCG (Knuth's MMIX constants) and Fisher-Yates, written the same way
// in every language so the three demos see the same batches.
var lcg uint64

func randBelow(n uint64) uint64 {
	lcg = lcg*6364136223846793005 + 1442695040888963407
	return (lcg >> 33) % n
}

func shuffle(a []int64) {
	for i := int64(len(a)) - 1; i > 0; i-- {
		j := int64(randBelow(uint64(i) + 1))
		a[i], a[j] = a[j], a[i]
	}
}

func load(path string) ([]float32, []int64) {
	f, err := os.Open(path)
	check(err, "open")
	defer f.Close()
	gz, err := gzip.NewReader(f)
	check(err, "gzip")
	x, y := make([]float32, 0, rows*pixels), make([]int64, 0, rows)
	sc := bufio.NewScanner(gz)
	for sc.Scan() && len(y) < rows {
		fields := strings.Split(strings.TrimSpace(sc.Text()), ",")
		if len(fields) != pixels+1 {
			check(fmt.Errorf("%s: bad data at row %d", path, len(y)), "load")
		}
		for c, s := range fields {
			v, err := strconv.ParseFloat(s, 64)
			check(err, "load")
			if c < pixels {
				x = append(x, float32(v/16.0))
			} else {
				y = append(y, int64(v))
			}
		}
	}
	check(sc.Err(), "load")
	if len(y) != rows {
		check(fmt.Errorf("%s: %d rows, want %d", path, len(y), rows), "load")
	}
	return x, y
}

// selectRows returns the rows of all at idx.
func selectRows(all *autograd.Tensor, idx []int64) *autograd.Tensor {
	i, err := autograd.FromSlice(idx)
	check(err, "FromSlice")
	defer i.Release()
	r, err := all.IndexSelect(0, i)
	check(err, "IndexSelect")
	return r
}

// accuracy is the fraction of the rows of x that model classifies as y says.
func accuracy(model nn.Module, x, y *autograd.Tensor) float64 {
	var c float64
	check(autograd.NoGrad(func() error {
		var tp autograd.Tape
		defer tp.Release()
		logits := tp.T(model.Forward(x))
		pred := tp.T(logits.Argmax(1, false))
		hit := tp.T(pred.Eq(y))
		count := tp.T(hit.Sum())
		if !tp.Check(nil) {
			return tp.Err()
		}
		var err error
		c, err = count.Item()
		return err
	}), "accuracy")
	return c / float64(y.Numel())
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	d := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return d.Seconds()
}

func main() {
	_, src, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(src), "..", "..", "data", "digits.csv.gz")
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	xs, ys := load(path)

	xAll, err := autograd.FromSlice(xs, rows, pixels)
	check(err, "FromSlice")
	yAll, err := autograd.FromSlice(ys, rows)
	check(err, "FromSlice")

	perm := make([]int64, rows)
	for i := range perm {
		perm[i] = int64(i)
	}
	shuffle(perm)
	xTrain, yTrain := selectRows(xAll, perm[:train]), selectRows(yAll, perm[:train])
	xTest, yTest := selectRows(xAll, perm[train:]), selectRows(yAll, perm[train:])

	// torch.nn.Linear's initialisation, drawn from one generator: w1, b1, w2, b2.
	gen, err := autograd.NewGenerator(0)
	check(err, "NewGenerator")
	fc1, err := nn.NewLinear(pixels, hidden, nn.WithGenerator(gen))
	check(err, "NewLinear")
	fc2, err := nn.NewLinear(hidden, classes, nn.WithGenerator(gen))
	check(err, "NewLinear")
	model, err := nn.NewSequential(fc1, nn.NewReLU(), fc2)
	check(err, "NewSequential")
	opt, err := autograd.NewAdam(model.Parameters(), 3e-3, autograd.WithBetas(0.9, 0.999),
		autograd.WithEps(1e-8), autograd.WithWeightDecay(0), autograd.WithAMSGrad(false))
	check(err, "NewAdam")

	fmt.Printf("digits: %d training and %d test images, %d-%d-%d ReLU network, Adam lr 3e-3, batch %d\n",
		train, rows-train, pixels, hidden, classes, batch)
	order := make([]int64, train)
	for i := range order {
		order[i] = int64(i)
	}
	start := cpuSeconds()
	for epoch := 1; epoch <= epochs; epoch++ {
		shuffle(order)
		lossSum, batches := 0.0, 0
		for b := 0; b < train; b += batch {
			n := min(batch, train-b)
			var tp autograd.Tape
			xb := tp.T(selectRows(xTrain, order[b:b+n]), nil)
			yb := tp.T(selectRows(yTrain, order[b:b+n]), nil)
			tp.Check(opt.ZeroGrad(true))
			logits := tp.T(model.Forward(xb))
			loss := tp.T(logits.CrossEntropy(yb))
			tp.Check(loss.Backward())
			tp.Check(opt.Step())
			l, err := loss.Item()
			tp.Check(err)
			check(tp.Err(), "training step")
			lossSum += l
			batches++
			tp.Release()
		}
		if epoch == 1 || epoch%10 == 0 {
			fmt.Printf("epoch %2d/%d  loss %.4f  train_accuracy %.4f  (%.2f s)\n", epoch, epochs,
				lossSum/float64(batches), accuracy(model, xTrain, yTrain), cpuSeconds()-start)
		}
	}
	fmt.Printf("test_accuracy=%.4f\n", accuracy(model, xTest, yTest))

	opt.Release()
	model.Release()
	gen.Release()
	for _, t := range []*autograd.Tensor{xAll, yAll, xTrain, yTrain, xTest, yTest} {
		t.Release()
	}
}
