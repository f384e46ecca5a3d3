module worker-certification/ledger-interop

go 1.26.0

require (
	github.com/transparency-dev/formats v0.1.1 // indirect
	github.com/transparency-dev/merkle v0.0.2 // indirect
	golang.org/x/mod v0.43.0 // indirect
)
