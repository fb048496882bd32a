// Command shoestring is the reference app of the shoestring host: a thumbnail service
// whose web tier accepts images and whose worker makes their thumbnails, in one binary
// (see README.md). It is built only from the public API that any app uses: host.New,
// the built-in task packages' Register, and Main.
package main

import (
	"os"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/tasks/demo"
	"github.com/shoestring-go/shoestring/tasks/thumbnail"
)

func main() {
	h := host.New()
	thumbnail.Register(h) // image:thumbnail and POST /api/v1/images
	demo.Register(h)      // echo and batch:count
	os.Exit(h.Main())
}
