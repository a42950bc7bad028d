package nn

import (
	"fmt"

	"libautograd.dev/autograd"
)

// Embedding is torch.nn.Embedding: a lookup table whose Forward returns the rows of Weight at
// Int64 indices. PyTorch's padding_idx, max_norm (with norm_type and scale_grad_by_freq) and
// sparse gradients are not supported.
type Embedding struct {
	// NumEmbeddings is the number of rows (the indices are in [0, NumEmbeddings)),
	// EmbeddingDim the length of each.
	NumEmbeddings, EmbeddingDim int64
	// Weight is the [NumEmbeddings, EmbeddingDim] table, a leaf that requires grad.
	Weight *autograd.Tensor
	eval   bool
}

// NewEmbedding makes an Embedding initialised as torch.nn.Embedding: the weight is drawn from
// N(0, 1) with autograd.Randn, as the Lua binding's nn.Embedding draws it, so the same
// generator state gives the same table in Go, Lua and C. Options: WithDType (default
// Float32), WithGenerator (default: autograd's default generator). A negative size is an
// EInval error.
func NewEmbedding(numEmbeddings, embeddingDim int64, opts ...Option) (*Embedding, error) {
	fn := fmt.Sprintf("nn.NewEmbedding(%d, %d)", numEmbeddings, embeddingDim)
	o, err := parseOptions(fn, options{dtype: autograd.Float32}, opts, "WithDType",
		"WithGenerator")
	if err != nil {
		return nil, err
	}
	if numEmbeddings < 0 || embeddingDim < 0 {
		return nil, errorf(autograd.EInval, "%s: the sizes must be >= 0", fn)
	}
	w, err := autograd.Randn(o.gen, o.dtype, numEmbeddings, embeddingDim)
	if err != nil {
		return nil, wrap(fn, err)
	}
	if w, err = requireGrad(w); err != nil {
		return nil, wrap(fn, err)
	}
	return &Embedding{NumEmbeddings: numEmbeddings, EmbeddingDim: embeddingDim, Weight: w}, nil
}

// requireGrad makes the new tensor p require grad, releasing it on failure.
func requireGrad(p *autograd.Tensor) (*autograd.Tensor, error) {
	if err := p.SetRequiresGrad(true); err != nil {
		p.Release()
		return nil, err
	}
	return p, nil
}

// Forward returns the rows of Weight at indices, an Int64 tensor of any shape holding
// 0-based row numbers (autograd.Embedding): the result has shape indices.shape +
// [EmbeddingDim]. An index outside [0, NumEmbeddings) is an ERange error. In backward, the
// gradient of a row used several times is the sum of its uses.
func (e *Embedding) Forward(indices *autograd.Tensor) (*autograd.Tensor, error) {
	if e == nil {
		return nil, nilModule("Embedding", "Forward")
	}
	if indices == nil {
		return nil, nilInput("nn." + e.String())
	}
	y, err := autograd.Embedding(e.Weight, indices)
	return y, wrap("nn."+e.String(), err)
}

// Parameters returns Weight.
func (e *Embedding) Parameters() []*autograd.Tensor { return tensorsOf(e.NamedParameters()) }

// NamedParameters returns "weight".
func (e *Embedding) NamedParameters() []NamedParameter {
	if e == nil {
		return nil
	}
	return collect([]NamedParameter{{"weight", e.Weight}}, nil)
}

// Train sets training (true) or evaluation (false) mode; Embedding computes the same in both.
func (e *Embedding) Train(mode bool) {
	if e != nil {
		e.eval = !mode
	}
}

// Training reports whether e is in training mode (false for a nil Embedding).
func (e *Embedding) Training() bool { return e != nil && !e.eval }

// ZeroGrad zeroes the .grad of Weight, or drops it when setToNone is true.
func (e *Embedding) ZeroGrad(setToNone bool) error {
	return zeroGrad("Embedding", e == nil, e.NamedParameters(), setToNone)
}

// Release releases Weight.
func (e *Embedding) Release() {
	if e != nil {
		e.Weight.Release()
	}
}

// String returns PyTorch's representation, e.g. "Embedding(10, 3)".
func (e *Embedding) String() string {
	if e == nil {
		return "Embedding(nil)"
	}
	return fmt.Sprintf("Embedding(%d, %d)", e.NumEmbeddings, e.EmbeddingDim)
}
