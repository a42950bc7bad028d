module libautograd.dev/autograd

go 1.24
