// Independent check with the Go reference libraries: verify our checkpoint note and an
// inclusion and a consistency proof produced by ledger/proofs.py.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

type incl struct {
	LeafIdx    uint64   `json:"leafIdx"`
	TreeSize   uint64   `json:"treeSize"`
	LeafHash   string   `json:"leafHash"`
	Root       string   `json:"root"`
	Proof      []string `json:"proof"`
	LeafData   string   `json:"leafData"`
	Checkpoint string   `json:"checkpoint"`
	Origin     string   `json:"origin"`
}
type cons struct {
	Size1, Size2 uint64
	Root1, Root2 string
	Proof        []string
}

func b(s string) []byte {
	x, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return x
}
func bs(ss []string) [][]byte {
	out := [][]byte{}
	for _, s := range ss {
		out = append(out, b(s))
	}
	return out
}

func main() {
	vkey := os.Args[1]
	var in incl
	raw, _ := os.ReadFile(os.Args[2])
	if err := json.Unmarshal(raw, &in); err != nil {
		panic(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		panic(err)
	}
	cp, _, _, err := log.ParseCheckpoint([]byte(in.Checkpoint), in.Origin, v)
	if err != nil {
		panic(err)
	}
	fmt.Println("checkpoint ok:", cp.Origin, cp.Size)
	leaf := rfc6962.DefaultHasher.HashLeaf(b(in.LeafData))
	if string(leaf) != string(b(in.LeafHash)) {
		panic("leaf hash differs")
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, in.LeafIdx, cp.Size, leaf, bs(in.Proof), cp.Hash); err != nil {
		panic(err)
	}
	fmt.Println("inclusion ok:", in.LeafIdx)
	var c cons
	raw, _ = os.ReadFile(os.Args[3])
	if err := json.Unmarshal(raw, &c); err != nil {
		panic(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, c.Size1, c.Size2, bs(c.Proof), b(c.Root1), b(c.Root2)); err != nil {
		panic(err)
	}
	fmt.Println("consistency ok:", c.Size1, c.Size2)
}
