/*
 * autograd.i: the one SWIG interface for every binding. It wraps abi/autograd.h as it is;
 * what differs between languages (how arrays, out-parameters, ownership and status codes
 * cross the boundary) lives in one typemap file per language, included below. No function
 * is wrapped by hand.
 */
%module autograd_core

%{
#include "autograd.h"
%}

#if defined(SWIGLUA)
%include "lua/typemaps.i"
#elif defined(SWIGGO)
%include "go/typemaps.i"
#else
#error "autograd.i: no typemaps for this target language"
#endif

/* The handles are opaque: never construct or destruct them from SWIG. */
%nodefaultctor;
%nodefaultdtor;

%include "autograd.h"
