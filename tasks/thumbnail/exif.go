package thumbnail

import (
	"bytes"
	"encoding/binary"
)

// JPEG markers used while looking for the Exif segment (ITU-T T.81 Table B.1).
const (
	markerTEM  = 0x01 // standalone, no length
	markerRST0 = 0xD0 // RST0..RST7 are standalone, no length
	markerRST7 = 0xD7
	markerSOI  = 0xD8
	markerEOI  = 0xD9
	markerSOS  = 0xDA // entropy-coded data follows; Exif must come before it
	markerAPP1 = 0xE1
)

// TIFF field values (TIFF 6.0 §2 "Image File Directory" and §8 "Orientation").
const (
	tiffMagic      = 42
	tagOrientation = 0x0112 // 274
	typeShort      = 3
	ifdEntrySize   = 12
)

// exifHeader starts the payload of an Exif APP1 segment (Exif 2.32 §4.5.4).
var exifHeader = []byte("Exif\x00\x00")

// jpegOrientation returns the Orientation (1..8) recorded in the Exif APP1
// segment of the JPEG file data, or 1 when there is none or anything about it
// is malformed. It never reads out of bounds and never panics.
//
// The walk follows ITU-T T.81 Annex B.1.1: after SOI each segment is 0xFF
// (optionally preceded by more 0xFF fill bytes), a marker byte and, unless the
// marker is standalone (TEM, RSTn), a big-endian length that counts itself.
// The first APP1 segment whose payload starts with "Exif\0\0" is parsed as a
// TIFF file (Exif 2.32, CIPA DC-008-2019, §4.5.4 and §4.6.2); other APP1
// segments, such as XMP, are skipped. The walk stops at SOS or EOI.
func jpegOrientation(data []byte) int {
	if len(data) < 2 || data[0] != 0xFF || data[1] != markerSOI {
		return 1
	}
	i := 2
	for {
		if i >= len(data) || data[i] != 0xFF {
			return 1
		}
		for i < len(data) && data[i] == 0xFF {
			i++
		}
		if i >= len(data) {
			return 1
		}
		marker := data[i]
		i++
		switch {
		case marker == markerTEM || (marker >= markerRST0 && marker <= markerRST7):
			continue
		case marker == 0x00 || marker == markerSOI || marker == markerEOI || marker == markerSOS:
			return 1
		}
		if len(data)-i < 2 {
			return 1
		}
		n := int(binary.BigEndian.Uint16(data[i:]))
		if n < 2 || n > len(data)-i {
			return 1
		}
		segment := data[i+2 : i+n]
		i += n
		if marker == markerAPP1 && bytes.HasPrefix(segment, exifHeader) {
			return tiffOrientation(segment[len(exifHeader):])
		}
	}
}

// tiffOrientation returns the Orientation tag (0x0112, SHORT, count 1) of IFD0
// of the TIFF structure t, or 1 when it is absent, out of 1..8 or malformed.
//
// Layout per TIFF 6.0 §2 and Exif 2.32 §4.6.2: an 8-byte header ("II" little
// endian or "MM" big endian, the number 42, the offset of IFD0 from the start
// of t), then at that offset a 2-byte entry count and 12-byte entries of tag,
// type, count and a 4-byte value field in which a single SHORT sits in the
// first two bytes.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var order binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		order = binary.LittleEndian
	case "MM":
		order = binary.BigEndian
	default:
		return 1
	}
	if order.Uint16(t[2:]) != tiffMagic {
		return 1
	}
	// 64-bit arithmetic so that offsets near 2^32 cannot wrap on 32-bit ints.
	size := uint64(len(t))
	ifd := uint64(order.Uint32(t[4:]))
	if ifd+2 > size {
		return 1
	}
	count := uint64(order.Uint16(t[ifd:]))
	for k := range count {
		e := ifd + 2 + k*ifdEntrySize
		if e+ifdEntrySize > size {
			return 1
		}
		if order.Uint16(t[e:]) != tagOrientation {
			continue
		}
		if order.Uint16(t[e+2:]) != typeShort || order.Uint32(t[e+4:]) != 1 {
			return 1
		}
		v := order.Uint16(t[e+8:])
		if v < 1 || v > 8 {
			return 1
		}
		return int(v)
	}
	return 1
}
