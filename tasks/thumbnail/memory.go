package thumbnail

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
)

// Memory: what a decode and a render hold, estimated from the header alone, so that
// a task can wait for its share of IMAGE_MEMORY_BUDGET, or be refused, before it
// allocates anything proportional to the image.

// maxKernelTemp bounds the temporary buffer of a CatmullRom scale, which
// golang.org/x/image/draw allocates as output width x source height x 32 bytes (four
// float64 per pixel); past it, Render scales with ApproxBiLinear, which needs none.
const maxKernelTemp = 32 << 20

// decodeBytes estimates what the standard decoders allocate for data whose header gave
// cfg: one sample plane per channel for JPEG (YCbCr as if 4:4:4, which bounds every
// subsampling; progressive JPEGs also keep 2-byte DCT coefficients for every sample),
// the full pixel buffer for PNG by colour model, and for GIF the first frame's
// paletted pixels plus, when that frame is smaller than the logical screen, the RGBA
// canvas Decode places it on.
func decodeBytes(data []byte, format string, cfg image.Config, firstFrame image.Rectangle) int64 {
	px := int64(cfg.Width) * int64(cfg.Height)
	switch format {
	case "jpeg":
		ch := int64(3)
		switch cfg.ColorModel {
		case color.GrayModel:
			ch = 1
		case color.CMYKModel:
			ch = 4
		}
		if jpegProgressive(data) {
			return px * ch * 3 // samples + coefficients
		}
		return px * ch
	case "png":
		switch cfg.ColorModel {
		case color.GrayModel:
			return px
		case color.Gray16Model:
			return px * 2
		case color.RGBA64Model, color.NRGBA64Model:
			return px * 8
		default:
			if _, ok := cfg.ColorModel.(color.Palette); ok {
				return px
			}
			return px * 4
		}
	case "gif":
		frame := int64(firstFrame.Dx()) * int64(firstFrame.Dy())
		if firstFrame == image.Rect(0, 0, cfg.Width, cfg.Height) {
			return frame
		}
		return frame + px*4
	}
	return px * 4
}

// Cost returns the bytes a task making thumbnails of the given widths from an image
// with info holds at its peak: the decoded image, plus the largest render (integer
// reduction, scaling temporary, output, rotation copy and JPEG buffer). It allocates
// nothing proportional to the image.
func Cost(info Info, widths []int) int64 {
	var render int64
	for _, w := range widths {
		render = max(render, renderBytes(info, w))
	}
	return info.DecodeBytes + render
}

// renderBytes estimates what Render holds for one width, mirroring its steps.
func renderBytes(info Info, width int) int64 {
	sw, sh := storedSize(info, width)
	f := reduceFactor(info.Width, info.Height, sw, sh)
	var reduced int64
	rw, rh := info.Width, info.Height
	if f > 1 {
		rw, rh = ceilDiv(info.Width, f), ceilDiv(info.Height, f)
		reduced = 4 * int64(rw) * int64(rh)
	}
	out := 4 * int64(sw) * int64(sh)
	var temp int64
	if t := 32 * int64(sw) * int64(rh); t <= maxKernelTemp {
		temp = t
	}
	rotated := int64(0)
	if info.Orientation != 1 {
		rotated = out
	}
	return reduced + temp + out + rotated + out/4 // out/4: the JPEG's bytes, generously
}

// storedSize is the thumbnail's size in stored orientation for a display width.
func storedSize(info Info, width int) (sw, sh int) {
	w, h := Size(info, width)
	if info.transposed() {
		return h, w
	}
	return w, h
}

// reduceFactor is the largest integer factor that keeps the reduced image at least
// twice the output in both directions (so the final filter still has pixels to
// average), and 1 when there is none.
func reduceFactor(w, h, ow, oh int) int {
	return max(1, min(w/(2*max(ow, 1)), h/(2*max(oh, 1))))
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// reduce shrinks src by the integer factor f >= 2 with a box filter: each output pixel
// is the mean of an f x f block (a partial block at the right and bottom edges is the
// mean of what is there), in premultiplied RGBA. Rows are read once, with fast paths
// for the decoders' own image types.
func reduce(src image.Image, f int) *image.RGBA {
	b := src.Bounds()
	dw, dh := ceilDiv(b.Dx(), f), ceilDiv(b.Dy(), f)
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	sums := make([]uint64, dw*4)
	counts := make([]uint64, dw)
	row := make([]uint8, b.Dx()*4)
	for y := range dh {
		clear(sums)
		clear(counts)
		for sy := y * f; sy < min(y*f+f, b.Dy()); sy++ {
			readRow(src, b.Min.Y+sy, row)
			for sx := range b.Dx() {
				x := sx / f
				p := row[sx*4 : sx*4+4]
				s := sums[x*4 : x*4+4]
				s[0] += uint64(p[0])
				s[1] += uint64(p[1])
				s[2] += uint64(p[2])
				s[3] += uint64(p[3])
				counts[x]++
			}
		}
		out := dst.Pix[y*dst.Stride:]
		for x := range dw {
			n := counts[x]
			for c := range 4 {
				out[x*4+c] = uint8((sums[x*4+c] + n/2) / n)
			}
		}
	}
	return dst
}

// readRow writes row y of src as premultiplied RGBA, 8 bits per channel, into row.
func readRow(src image.Image, y int, row []uint8) {
	b := src.Bounds()
	switch s := src.(type) {
	case *image.RGBA:
		copy(row, s.Pix[s.PixOffset(b.Min.X, y):][:len(row)])
	case *image.YCbCr:
		for x := range b.Dx() {
			yi, ci := s.YOffset(b.Min.X+x, y), s.COffset(b.Min.X+x, y)
			r, g, bl := color.YCbCrToRGB(s.Y[yi], s.Cb[ci], s.Cr[ci])
			row[x*4], row[x*4+1], row[x*4+2], row[x*4+3] = r, g, bl, 0xFF
		}
	case *image.Gray:
		for x, v := range s.Pix[s.PixOffset(b.Min.X, y):][:b.Dx()] {
			row[x*4], row[x*4+1], row[x*4+2], row[x*4+3] = v, v, v, 0xFF
		}
	default:
		for x := range b.Dx() {
			r, g, bl, a := src.At(b.Min.X+x, y).RGBA()
			row[x*4], row[x*4+1], row[x*4+2], row[x*4+3] = uint8(r>>8), uint8(g>>8), uint8(bl>>8), uint8(a>>8)
		}
	}
}

// gifFirstFrame walks a GIF's blocks (GIF89a §§17-27) up to the first image descriptor
// and returns its bounds, and checks that every frame it can see lies inside the
// logical screen (the decoders refuse one that does not). It reads no pixel data.
func gifFirstFrame(data []byte, screen image.Rectangle) (image.Rectangle, error) {
	bad := errors.New("malformed GIF blocks")
	if len(data) < 13 {
		return image.Rectangle{}, bad
	}
	i := 13
	if data[10]&0x80 != 0 { // global colour table
		i += 3 << (data[10]&7 + 1)
	}
	var first image.Rectangle
	for frames := 0; i < len(data) && frames < 10_000; {
		switch data[i] {
		case 0x21: // extension: label, then sub-blocks
			i += 2
			for i < len(data) && data[i] != 0 {
				i += int(data[i]) + 1
			}
			i++
		case 0x2C: // image descriptor
			if i+10 > len(data) {
				return first, bad
			}
			x, y := int(binary.LittleEndian.Uint16(data[i+1:])), int(binary.LittleEndian.Uint16(data[i+3:]))
			w, h := int(binary.LittleEndian.Uint16(data[i+5:])), int(binary.LittleEndian.Uint16(data[i+7:]))
			r := image.Rect(x, y, x+w, y+h)
			if !r.In(screen) {
				return first, fmt.Errorf("GIF frame %v lies outside its %dx%d logical screen", r, screen.Dx(), screen.Dy())
			}
			if frames == 0 {
				first = r
			}
			frames++
			flags := data[i+9]
			i += 10
			if flags&0x80 != 0 { // local colour table
				i += 3 << (flags&7 + 1)
			}
			i++ // LZW minimum code size
			for i < len(data) && data[i] != 0 {
				i += int(data[i]) + 1
			}
			i++
		case 0x3B: // trailer
			return first, nil
		default:
			return first, bad
		}
	}
	if first.Empty() {
		return first, bad
	}
	return first, nil
}

// jpegProgressive reports whether data's frame header is SOF2 (progressive DCT,
// ITU T.81 Table B.1), walking the markers before it.
func jpegProgressive(data []byte) bool {
	for i := 2; i+4 <= len(data); {
		if data[i] != 0xFF {
			return false
		}
		m := data[i+1]
		switch {
		case m == 0xC2:
			return true
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC:
			return false // another SOF
		case m == 0xDA:
			return false // scan before any frame header
		}
		i += 2 + int(binary.BigEndian.Uint16(data[i+2:]))
	}
	return false
}
