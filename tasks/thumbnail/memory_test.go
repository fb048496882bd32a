package thumbnail_test

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"testing"

	"github.com/shoestring-go/shoestring/tasks/thumbnail"
)

// gifScreenBomb is a 35-byte GIF whose logical screen is w x h and whose only frame is
// one pixel: the decoder's canvas is the screen's size.
func gifScreenBomb(w, h uint16) []byte {
	var b bytes.Buffer
	b.WriteString("GIF89a")
	binary.Write(&b, binary.LittleEndian, w)
	binary.Write(&b, binary.LittleEndian, h)
	b.Write([]byte{0x80, 0, 0})             // global colour table of 2, background 0, aspect 0
	b.Write([]byte{0, 0, 0, 255, 255, 255}) // the table
	b.Write([]byte{0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0})
	b.Write([]byte{2, 2, 0x4C, 0x01, 0, 0x3B}) // LZW data of one pixel, trailer
	return b.Bytes()
}

// TestCost: the estimate counts what the decoder and the render will allocate, so the
// 35-byte GIF with a 7000x7000 screen is over the default 256 MiB budget for a 7000 px
// thumbnail, while a 3840x2400 wallpaper's usual thumbnails fit many times over.
func TestCost(t *testing.T) {
	t.Parallel()
	bomb := gifScreenBomb(7000, 7000)
	info, err := thumbnail.Inspect(bomb)
	if err != nil {
		t.Fatal(err)
	}
	if len(bomb) != 35 || info.Width != 7000 || info.DecodeBytes < 4*7000*7000 {
		t.Fatalf("%d bytes, info %+v", len(bomb), info)
	}
	if c := thumbnail.Cost(info, []int{7000}); c <= 256<<20 {
		t.Errorf("Cost of the GIF screen bomb at 7000 px = %d MiB, want over 256", c>>20)
	}

	img := image.NewNRGBA(image.Rect(0, 0, 3840, 2400))
	for y := range 2400 {
		for x := range 3840 {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	info, err = thumbnail.Inspect(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	c := thumbnail.Cost(info, []int{160, 320, 640})
	if info.DecodeBytes != 4*3840*2400 || c > 64<<20 {
		t.Errorf("wallpaper: decode %d MiB, cost %d MiB, want 35 and under 64", info.DecodeBytes>>20, c>>20)
	}
	t.Logf("3840x2400 PNG at 160/320/640: %d MiB", c>>20)
}

// TestGIFFrameOutsideScreen: a frame outside its logical screen is refused from the
// header walk.
func TestGIFFrameOutsideScreen(t *testing.T) {
	t.Parallel()
	b := gifScreenBomb(10, 10)
	b[19+1] = 20 // the frame's left edge: x = 20 on a 10-wide screen
	if _, err := thumbnail.Inspect(b); err == nil {
		t.Errorf("Inspect accepted a frame outside the screen")
	}
}
