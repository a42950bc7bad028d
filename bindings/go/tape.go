// tape.go: Tape, which keeps the first error of a sequence of calls and the tensors they made,
// so that a block of ops needs one error check and one release.

package autograd

// Tape runs a sequence of operations with a sticky error, like bufio.Writer: the first error
// is kept and reported by Err, and after it the operations go on harmlessly (they receive nil
// tensors and fail without effect), so a computation can be written without a check per
// step:
//
//	var tp autograd.Tape
//	defer tp.Release()
//	y := tp.T(x.Mul(x))
//	z := tp.T(tp.T(y.MulScalar(2)).AddScalar(5))
//	tp.Check(z.Backward())
//	if err := tp.Err(); err != nil {
//		return err
//	}
//
// The tape also remembers the tensors it was given, and Release releases them all at once
// (Keep exempts the ones to keep), which suits the intermediates of a training step. A Tape
// must not be used by several goroutines at once. The zero Tape is ready to use.
type Tape struct {
	err  error
	made []*Tensor
	// kept: tensors exempted by Keep since they were last recorded. A set rather than a
	// search of made: a tape of n tensors kept one by one would take n^2 steps.
	kept map[*Tensor]struct{}
}

// T records the result of an operation: it returns t, and keeps err if it is the first.
func (tp *Tape) T(t *Tensor, err error) *Tensor {
	if err != nil && tp.err == nil {
		tp.err = err
	}
	if t != nil {
		tp.made = append(tp.made, t)
		if tp.kept != nil {
			delete(tp.kept, t) // recorded again: released again
		}
	}
	return t
}

// Check records the error of an operation that makes no tensor (Backward, Step ...), and
// reports whether the tape is still free of errors.
func (tp *Tape) Check(err error) bool {
	if err != nil && tp.err == nil {
		tp.err = err
	}
	return tp.err == nil
}

// Err returns the first error recorded, or nil.
func (tp *Tape) Err() error { return tp.err }

// Keep removes t from the tensors Release will release, and returns it. (Recording t again
// with T puts it back.)
func (tp *Tape) Keep(t *Tensor) *Tensor {
	if t != nil {
		if tp.kept == nil {
			tp.kept = make(map[*Tensor]struct{})
		}
		tp.kept[t] = struct{}{}
	}
	return t
}

// Release releases every tensor recorded by T (except those kept) and forgets them; the
// error stays.
func (tp *Tape) Release() {
	for _, t := range tp.made {
		if _, kept := tp.kept[t]; !kept {
			t.Release()
		}
	}
	tp.made = tp.made[:0]
	tp.kept = nil
}

// Reset forgets the error (the tensors recorded stay recorded).
func (tp *Tape) Reset() { tp.err = nil }
