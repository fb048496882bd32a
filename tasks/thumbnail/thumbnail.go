// Package thumbnail is the reference app's built-in task kind, image:thumbnail, with
// its upload route POST /api/v1/images, registered through the public host API like
// any app's (Register). Below them it reads JPEG, PNG and GIF images and renders JPEG
// thumbnails of them, upright according to their EXIF orientation.
//
// Callers are expected to Inspect or Decode with a pixel limit before doing any
// work proportional to the image size, so that a small file claiming huge
// dimensions (a "decompression bomb") costs only a header read. All functions
// are safe for concurrent use; none of them modifies its arguments.
package thumbnail

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"slices"

	"golang.org/x/image/draw"
)

// ErrUnsupported is returned (wrapped) when the data is not a JPEG, PNG or GIF,
// or its header cannot be read.
var ErrUnsupported = errors.New("unsupported image format")

// ErrTooLarge is returned (wrapped) when width*height exceeds the limit.
var ErrTooLarge = errors.New("image too large")

// formats are the image.RegisterFormat names this package accepts. Any other
// format registered elsewhere in the program is refused with ErrUnsupported.
var formats = []string{"jpeg", "png", "gif"}

// jpegQuality is the quality of thumbnails written by Render.
const jpegQuality = 85

// Info is what the header says, read without decoding pixels.
type Info struct {
	// Format is "jpeg", "png" or "gif".
	Format string
	// Width and Height are in pixels as stored, before orientation.
	Width, Height int
	// Orientation is the EXIF Orientation tag, 1..8, and 1 when absent
	// (always 1 for PNG and GIF). 5..8 mean the stored image is transposed
	// relative to how it is displayed.
	Orientation int
	// DecodeBytes estimates, in bytes, what Decode allocates for the pixels (see
	// Cost): from the format, colour model and dimensions, and for a GIF its
	// first frame and logical screen.
	DecodeBytes int64
}

// DisplayWidth returns the width in pixels after EXIF orientation, which is
// Height for orientations 5..8 and Width otherwise.
func (i Info) DisplayWidth() int {
	if i.transposed() {
		return i.Height
	}
	return i.Width
}

// DisplayHeight returns the height in pixels after EXIF orientation, which is
// Width for orientations 5..8 and Height otherwise.
func (i Info) DisplayHeight() int {
	if i.transposed() {
		return i.Width
	}
	return i.Height
}

// transposed reports whether displaying the image swaps rows and columns.
func (i Info) transposed() bool {
	return i.Orientation >= 5 && i.Orientation <= 8
}

// Inspect reads only the header of data: image.DecodeConfig for the format and
// dimensions and, for JPEG, the Orientation tag (0x0112) in IFD0 of the
// "Exif\0\0" APP1 segment (Exif 2.32, CIPA DC-008-2019, §4.5.4 and §4.6.2;
// TIFF 6.0 §2 and §8). It allocates no pixel buffers, so its cost does not
// depend on the dimensions the header claims. PNG eXIf chunks are ignored.
//
// It returns an error wrapping ErrUnsupported, naming what was seen, when data
// is not a JPEG, PNG or GIF, when the header cannot be read (the decoder's
// error is wrapped too), or when it gives a zero dimension. Malformed EXIF is
// not an error: the orientation is then 1.
func Inspect(data []byte) (Info, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	switch {
	case errors.Is(err, image.ErrFormat):
		return Info{}, fmt.Errorf("%w: leading bytes %q", ErrUnsupported, data[:min(len(data), 8)])
	case err != nil:
		return Info{}, fmt.Errorf("%w: read %s header: %w", ErrUnsupported, format, err)
	case !slices.Contains(formats, format):
		return Info{}, fmt.Errorf("%w: %s", ErrUnsupported, format)
	case cfg.Width <= 0 || cfg.Height <= 0:
		return Info{}, fmt.Errorf("%w: %s header gives %dx%d pixels", ErrUnsupported, format, cfg.Width, cfg.Height)
	}
	info := Info{Format: format, Width: cfg.Width, Height: cfg.Height, Orientation: 1}
	if format == "jpeg" {
		info.Orientation = jpegOrientation(data)
	}
	screen := image.Rect(0, 0, cfg.Width, cfg.Height)
	first := screen
	if format == "gif" {
		if first, err = gifFirstFrame(data, screen); err != nil {
			return Info{}, fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
	}
	info.DecodeBytes = decodeBytes(data, format, cfg, first)
	return info, nil
}

// Decode inspects data (see Inspect, whose errors it returns as they are),
// refuses images of more than maxPixels pixels (width*height) with an error
// wrapping ErrTooLarge before decoding anything, and then decodes the pixels:
// the first frame for a GIF. A maxPixels of 0 or less refuses every image.
//
// The image has bounds (0,0)-(Width,Height) in stored orientation; a GIF
// whose first frame covers only part of its logical screen is placed on a
// transparent canvas of the screen's size. A truncated or corrupt body gives
// an error "decode <format>: ..." wrapping the decoder's error. The Info is
// returned with ErrTooLarge and decode errors too, for logging.
func Decode(data []byte, maxPixels int64) (image.Image, Info, error) {
	info, err := Inspect(data)
	if err != nil {
		return nil, Info{}, err
	}
	// Both factors fit in 31 bits (the decoders reject more), so the product
	// cannot overflow int64.
	if n := int64(info.Width) * int64(info.Height); n > maxPixels {
		return nil, info, fmt.Errorf("%w: %dx%d is %d pixels, limit is %d", ErrTooLarge, info.Width, info.Height, n, maxPixels)
	}
	var img image.Image
	switch info.Format {
	case "jpeg":
		img, err = jpeg.Decode(bytes.NewReader(data))
	case "png":
		img, err = png.Decode(bytes.NewReader(data))
	case "gif":
		// gif.Decode stops after the first frame.
		img, err = gif.Decode(bytes.NewReader(data))
	}
	if err != nil {
		return nil, info, fmt.Errorf("decode %s: %w", info.Format, err)
	}
	screen := image.Rect(0, 0, info.Width, info.Height)
	if b := img.Bounds(); b != screen {
		// Only a GIF frame can differ from its header's size, and the decoder
		// has checked that it lies inside the logical screen (GIF89a §20).
		canvas := image.NewRGBA(screen)
		draw.Draw(canvas, b, img, b.Min, draw.Src)
		img = canvas
	}
	return img, info, nil
}

// Size returns the output dimensions in pixels for a requested display width
// in pixels: width is clamped to 1..info.DisplayWidth() (never upscaled), the
// height keeps the display aspect ratio, rounded half up, and is at least 1.
// An Info with no pixels gives 1x1.
func Size(info Info, width int) (w, h int) {
	dw, dh := int64(info.DisplayWidth()), int64(info.DisplayHeight())
	if dw < 1 || dh < 1 {
		return 1, 1
	}
	cw := min(max(int64(width), 1), dw)
	// Quotient and remainder rather than (2*dh*cw+dw)/(2*dw), which could
	// overflow for PNG dimensions near 2^31.
	q, r := dh*cw/dw, dh*cw%dw
	if 2*r >= dw {
		q++
	}
	return int(cw), int(max(q, 1))
}

// Render returns a JPEG (quality 85) of img, displayed width w = width clamped
// as by Size, and the output's dimensions w and h in pixels. img must be as
// returned by Decode for info: its bounds must be Width x Height, in stored
// orientation. Transparent and translucent pixels are composited over white.
//
// The image is scaled first, in stored orientation (at h x w for orientations
// 5..8), with golang.org/x/image/draw.CatmullRom, and then flipped or rotated
// to display orientation, which touches only the thumbnail's pixels. The
// orientations follow the Orientation tag 0x0112 of TIFF 6.0 §8, as used by
// Exif 2.32 (CIPA DC-008-2019) §4.6.4: for example 6 means stored row 0 is
// the visual right side, so the image is rotated 90° clockwise for display.
//
// Errors: a mismatch between img's bounds and info, an orientation outside
// 1..8, or "encode jpeg: ..." from the encoder.
func Render(img image.Image, info Info, width int) (data []byte, w, h int, err error) {
	if info.Orientation < 1 || info.Orientation > 8 {
		return nil, 0, 0, fmt.Errorf("render thumbnail: orientation %d is not in 1..8", info.Orientation)
	}
	b := img.Bounds()
	if b.Empty() || b.Dx() != info.Width || b.Dy() != info.Height {
		return nil, 0, 0, fmt.Errorf("render thumbnail: image is %dx%d but info says %dx%d", b.Dx(), b.Dy(), info.Width, info.Height)
	}
	w, h = Size(info, width)
	sw, sh := w, h
	if info.transposed() {
		sw, sh = h, w
	}
	// First an integer box reduction, so the final filter never works from far more
	// pixels than it keeps (and its temporary, width x source height x 32 bytes, stays
	// small); then CatmullRom, or ApproxBiLinear for an output close to the source's
	// size, whose temporary would be the largest.
	src, sb := img, b
	if f := reduceFactor(b.Dx(), b.Dy(), sw, sh); f > 1 {
		src = reduce(img, f)
		sb = src.Bounds()
	}
	scaled := image.NewRGBA(image.Rect(0, 0, sw, sh))
	for i := range scaled.Pix {
		scaled.Pix[i] = 0xFF // opaque white, the background for draw.Over
	}
	var filter draw.Scaler = draw.CatmullRom
	if 32*int64(sw)*int64(sb.Dy()) > maxKernelTemp {
		filter = draw.ApproxBiLinear
	}
	filter.Scale(scaled, scaled.Bounds(), src, sb, draw.Over, nil)
	src = nil
	out := orient(scaled, info.Orientation)

	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, out, &jpeg.Options{Quality: jpegQuality}); err != nil {
		return nil, 0, 0, fmt.Errorf("encode jpeg: %w", err)
	}
	return buf.Bytes(), w, h, nil
}

// orient returns src, which has its origin at (0,0), transformed from stored
// to display orientation o (1..8, TIFF 6.0 §8). Orientation 1 returns src
// itself; 5..8 return an image with width and height swapped.
//
// Each case maps a display pixel (x, y) of the w x h result back to the stored
// pixel it shows, in the sw x sh source. For 6, stored row 0 is the display's
// right column and stored column 0 its top row: stored (sx, sy) shows at
// (sh-1-sy, sx), so display (x, y) comes from (y, sh-1-x).
func orient(src *image.RGBA, o int) *image.RGBA {
	if o == 1 {
		return src
	}
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	w, h := sw, sh
	if o >= 5 {
		w, h = sh, sw
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			var sx, sy int
			switch o {
			case 2: // mirrored left to right
				sx, sy = sw-1-x, y
			case 3: // rotated 180°
				sx, sy = sw-1-x, sh-1-y
			case 4: // mirrored top to bottom
				sx, sy = x, sh-1-y
			case 5: // transposed about the main diagonal
				sx, sy = y, x
			case 6: // needs 90° clockwise
				sx, sy = y, sh-1-x
			case 7: // transposed about the anti-diagonal
				sx, sy = sw-1-y, sh-1-x
			case 8: // needs 90° counter-clockwise
				sx, sy = sw-1-y, x
			}
			copy(dst.Pix[dst.PixOffset(x, y):][:4], src.Pix[src.PixOffset(sx, sy):][:4])
		}
	}
	return dst
}
