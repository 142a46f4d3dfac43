#include "printing/barcode.h"

#include <algorithm>
#include <cctype>

namespace counterlink::platform::printing {
namespace {

bool all_digits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// EAN-13 digit patterns, 7 modules each, '1' a bar. Set A ("L", odd parity)
// is the left-hand code; set C ("R") is its complement and the right-hand
// code; set B ("G", even parity) is set C reversed.
constexpr std::array<std::string_view, 10> kEanL = {"0001101", "0011001", "0010011", "0111101",
                                                    "0100011", "0110001", "0101111", "0111011",
                                                    "0110111", "0001011"};
constexpr std::array<std::string_view, 10> kEanG = {"0100111", "0110011", "0011011", "0100001",
                                                    "0011101", "0111001", "0000101", "0010001",
                                                    "0001001", "0010111"};
constexpr std::array<std::string_view, 10> kEanR = {"1110010", "1100110", "1101100", "1000010",
                                                    "1011100", "1001110", "1010000", "1000100",
                                                    "1001000", "1110100"};
// The first digit is not drawn as bars: it selects which of the six
// left-hand digits use set G instead of set L.
constexpr std::array<std::string_view, 10> kEanParity = {"LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL",
                                                         "LGLLGG", "LGGLLG", "LGGGLL", "LGLGLG",
                                                         "LGLGGL", "LGGLGL"};

// Code 128 symbol patterns, values 0..106: bar/space widths in modules,
// bar first. Every symbol is 11 modules (the stop, 106, is 13 with its final
// bar) and its bars add up to an even number of modules.
constexpr std::array<std::string_view, 107> kCode128 = {
    "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312",  "132212",
    "221213", "221312", "231212", "112232", "122132", "122231", "113222", "123122",  "123221",
    "223211", "221132", "221231", "213212", "223112", "312131", "311222", "321122",  "321221",
    "312212", "322112", "322211", "212123", "212321", "232121", "111323", "131123",  "131321",
    "112313", "132113", "132311", "211313", "231113", "231311", "112133", "112331",  "132131",
    "113123", "113321", "133121", "313121", "211331", "231131", "213113", "213311",  "213131",
    "311123", "311321", "331121", "312113", "312311", "332111", "314111", "221411",  "431111",
    "111224", "111422", "121124", "121421", "141122", "141221", "112214", "112412",  "122114",
    "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111",  "111242",
    "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211",  "212141",
    "214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113",  "411311",
    "113141", "114131", "311141", "411131", "211412", "211214", "211232", "2331112",
};

constexpr int kCode128StartB = 104;
constexpr int kCode128Stop = 106;
constexpr int kCode128Modulus = 103;

void append_pattern(std::vector<bool>& modules, std::string_view pattern) {
  for (char c : pattern)
    modules.push_back(c == '1');
}

}  // namespace

char ean13_check_digit(std::string_view digits) {
  if (digits.size() < 12 || !all_digits(digits.substr(0, 12))) return '\0';
  int sum = 0;
  for (int i = 0; i < 12; ++i)
    sum += (digits[i] - '0') * (i % 2 == 0 ? 1 : 3);
  return static_cast<char>('0' + (10 - sum % 10) % 10);
}

std::string ean13_full_number(std::string_view digits) {
  if ((digits.size() != 12 && digits.size() != 13) || !all_digits(digits)) return {};
  std::string full(digits);
  if (full.size() == 12) full += ean13_check_digit(full);
  return full;
}

std::vector<bool> ean13_modules(std::string_view digits) {
  const std::string full = ean13_full_number(digits);
  if (full.empty() || full[12] != ean13_check_digit(full)) return {};
  std::vector<bool> modules;
  modules.reserve(95);
  append_pattern(modules, "101");
  const std::string_view parity = kEanParity[full[0] - '0'];
  for (int i = 1; i <= 6; ++i) {
    const int digit = full[i] - '0';
    append_pattern(modules, parity[i - 1] == 'L' ? kEanL[digit] : kEanG[digit]);
  }
  append_pattern(modules, "01010");
  for (int i = 7; i <= 12; ++i)
    append_pattern(modules, kEanR[full[i] - '0']);
  append_pattern(modules, "101");
  return modules;
}

std::vector<int> code128b_symbols(std::string_view data) {
  if (data.empty()) return {};
  std::vector<int> symbols;
  symbols.reserve(data.size() + 3);
  symbols.push_back(kCode128StartB);
  int checksum = kCode128StartB;
  int position = 1;
  for (unsigned char c : data) {
    if (c < 0x20 || c > 0x7E) return {};
    const int value = c - 0x20;
    symbols.push_back(value);
    checksum += position++ * value;
  }
  symbols.push_back(checksum % kCode128Modulus);
  symbols.push_back(kCode128Stop);
  return symbols;
}

std::array<int, 7> code128_widths(int value) {
  std::array<int, 7> widths{};
  if (value < 0 || value >= static_cast<int>(kCode128.size())) return widths;
  const std::string_view pattern = kCode128[value];
  for (std::size_t i = 0; i < pattern.size(); ++i)
    widths[i] = pattern[i] - '0';
  return widths;
}

std::vector<bool> code128_modules(const std::vector<int>& symbols) {
  std::vector<bool> modules;
  modules.reserve(symbols.size() * 11 + 2);
  for (int value : symbols) {
    const std::array<int, 7> widths = code128_widths(value);
    for (std::size_t i = 0; i < widths.size(); ++i)
      modules.insert(modules.end(), widths[i], i % 2 == 0);  // even index: bar
  }
  return modules;
}

}  // namespace counterlink::platform::printing
