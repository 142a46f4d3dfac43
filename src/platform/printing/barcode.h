// 1-D bar code encoders for the receipt preview: EAN-13 (ISO/IEC 15420) and
// Code 128 code set B (ISO/IEC 15417). Private to the printing library.
//
// A symbol is returned as its modules, left to right, true for a bar; the
// caller scales each module to the printer's narrow-bar width. No quiet zones:
// on paper they come from the margin, as with the printer's own GS k.
//
// Pure functions; the inputs are already validated by the markup parser, and
// a function given input outside its contract returns an empty result.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace counterlink::platform::printing {

// The EAN-13 check digit ('0'..'9') of the first 12 digits of `digits`
// (weights 1,3,1,3,... from the left, then 10 minus the sum mod 10), or '\0'
// when `digits` has fewer than 12 characters or a non-digit among them.
char ean13_check_digit(std::string_view digits);

// The 13 digits printed: 12 digits get their check digit appended (as the
// printer does), 13 are returned as they are. Empty for anything else.
std::string ean13_full_number(std::string_view digits);

// The 95 modules of an EAN-13 symbol for 12 or 13 digits: start guard 101,
// six left-hand digits in the L/G parity pattern selected by the first digit,
// centre guard 01010, six right-hand digits, end guard 101. Empty when the
// digits are not 12 or 13 digits or a given 13th digit is not the check digit.
std::vector<bool> ean13_modules(std::string_view digits);

// Code 128 symbol values for `data` in code set B: start B (104), one value
// per character (its ASCII code minus 32), the check symbol (104 plus the sum
// of position * value, mod 103) and stop (106). Empty when `data` is empty or
// holds anything outside printable ASCII (0x20..0x7E).
std::vector<int> code128b_symbols(std::string_view data);

// Bar and space widths, in modules, of Code 128 symbol `value` (0..106):
// bar, space, bar, space, bar, space (11 modules), and for the stop (106) a
// seventh, final bar (13 modules). Values outside 0..106 give all zeros.
std::array<int, 7> code128_widths(int value);

// The modules of a Code 128 symbol sequence (as from code128b_symbols).
std::vector<bool> code128_modules(const std::vector<int>& symbols);

}  // namespace counterlink::platform::printing
