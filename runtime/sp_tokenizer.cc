#include "runtime/sp_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <queue>
#include <sstream>

namespace grpo::runtime {

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a "<0xXX>" piece, or -1.
int parse_byte_piece(const std::string& p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  int hi = hex_digit(p[3]), lo = hex_digit(p[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

}  // namespace

StatusOr<SpTokenizer> SpTokenizer::load(const std::string& path, int32_t vocab_size) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return not_found("tokenizer.bin not found: " + path);
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open " + path);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return data_loss("error reading " + path);

  size_t pos = 0;
  auto read_i32 = [&](int32_t* v) {
    if (data.size() - pos < 4) return false;
    std::memcpy(v, data.data() + pos, 4);
    pos += 4;
    return true;
  };
  SpTokenizer tok;
  if (!read_i32(&tok.max_token_length_) || tok.max_token_length_ <= 0)
    return data_loss(path + ": missing or invalid max_token_length header");
  while (pos < data.size() && (vocab_size < 0 || tok.vocab_size() < vocab_size)) {
    const std::string where = path + ": token " + std::to_string(tok.vocab_size());
    float score = 0.0f;
    int32_t len = 0;
    if (data.size() - pos < 8) return data_loss(where + " is truncated (no score/length)");
    std::memcpy(&score, data.data() + pos, 4);
    pos += 4;
    (void)read_i32(&len);
    if (len < 0 || len > tok.max_token_length_) {
      return data_loss(where + " has length " + std::to_string(len) + " outside [0, " +
                       std::to_string(tok.max_token_length_) + "]");
    }
    if (data.size() - pos < static_cast<size_t>(len))
      return data_loss(where + " is truncated (" + std::to_string(len) + " bytes announced)");
    tok.pieces_.emplace_back(data.data() + pos, static_cast<size_t>(len));
    tok.scores_.push_back(score);
    pos += static_cast<size_t>(len);
  }
  if (vocab_size >= 0 && tok.vocab_size() < vocab_size) {
    return data_loss(path + " holds " + std::to_string(tok.vocab_size()) + " tokens, " +
                     std::to_string(vocab_size) + " expected");
  }
  if (tok.vocab_size() <= kEos) return data_loss(path + " holds fewer than 3 tokens");

  std::fill(std::begin(tok.byte_id_), std::end(tok.byte_id_), -1);
  tok.piece_byte_.assign(tok.pieces_.size(), -1);
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const std::string& p = tok.pieces_[static_cast<size_t>(id)];
    tok.piece_to_id_.emplace(p, id);
    int b = parse_byte_piece(p);
    if (b >= 0) {
      tok.piece_byte_[static_cast<size_t>(id)] = static_cast<int16_t>(b);
      if (tok.byte_id_[b] < 0) tok.byte_id_[b] = id;
    }
  }
  return tok;
}

StatusOr<std::vector<int32_t>> SpTokenizer::encode(std::string_view text, bool add_bos,
                                                   bool add_eos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 3);
  if (add_bos) ids.push_back(kBos);
  const size_t first_text_token = ids.size();  // merges start at the dummy prefix
  if (!text.empty()) {
    auto it = piece_to_id_.find(" ");
    if (it == piece_to_id_.end()) return failed_precondition("the vocabulary has no \" \" piece");
    ids.push_back(it->second);
  }
  // One token per code point (bytes grouped as llama2.c groups them), else byte fallback.
  std::string buf;
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if ((c & 0xC0) != 0x80) buf.clear();
    buf.push_back(static_cast<char>(c));
    bool next_is_continuation =
        i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
    if (next_is_continuation && buf.size() < 4) continue;
    auto found = piece_to_id_.find(buf);
    if (found != piece_to_id_.end()) {
      ids.push_back(found->second);
    } else {
      for (unsigned char b : buf) {
        if (byte_id_[b] < 0) {
          char hex[8];
          std::snprintf(hex, sizeof(hex), "0x%02X", b);
          return failed_precondition(std::string("the vocabulary has no <") + hex + "> byte piece");
        }
        ids.push_back(byte_id_[b]);
      }
    }
    buf.clear();
  }

  // Greedy merges by score. A heap ordered by (score desc, position asc) over a linked list gives
  // the same sequence of merges as llama2.c's repeated scan for the best adjacent pair.
  struct Sym {
    int32_t id, prev, next;
  };
  const auto n = static_cast<int32_t>(ids.size() - first_text_token);
  std::vector<Sym> syms(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i)
    syms[static_cast<size_t>(i)] = {ids[first_text_token + static_cast<size_t>(i)], i - 1,
                                    i + 1 < n ? i + 1 : -1};
  struct Cand {
    float score;
    int32_t pos, left_id, right_id, merged;
    bool operator<(const Cand& o) const { return score != o.score ? score < o.score : pos > o.pos; }
  };
  std::priority_queue<Cand> heap;
  std::string joined;
  auto push = [&](int32_t left) {
    if (left < 0) return;
    int32_t right = syms[static_cast<size_t>(left)].next;
    if (right < 0) return;
    int32_t a = syms[static_cast<size_t>(left)].id, b = syms[static_cast<size_t>(right)].id;
    joined = pieces_[static_cast<size_t>(a)];
    joined += pieces_[static_cast<size_t>(b)];
    auto it = piece_to_id_.find(joined);
    // llama2.c starts its best score at -1e10 and only takes strictly better pairs.
    if (it != piece_to_id_.end() && scores_[static_cast<size_t>(it->second)] > -1e10f)
      heap.push({scores_[static_cast<size_t>(it->second)], left, a, b, it->second});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& left = syms[static_cast<size_t>(c.pos)];
    if (left.id != c.left_id || left.next < 0) continue;
    Sym& right = syms[static_cast<size_t>(left.next)];
    if (right.id != c.right_id) continue;
    left.id = c.merged;
    right.id = -1;
    left.next = right.next;
    if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = c.pos;
    push(left.prev);
    push(c.pos);
  }
  ids.resize(first_text_token);
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = syms[static_cast<size_t>(i)].next)
    ids.push_back(syms[static_cast<size_t>(i)].id);
  if (add_eos) ids.push_back(kEos);
  return ids;
}

StatusOr<std::string> SpTokenizer::decode_piece(int32_t prev_id, int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return out_of_range("token id " + std::to_string(id) + " is not in the vocabulary (size " +
                        std::to_string(vocab_size()) + ")");
  }
  const auto i = static_cast<size_t>(id);
  if (piece_byte_[i] >= 0) return std::string(1, static_cast<char>(piece_byte_[i]));
  const std::string& p = pieces_[i];
  if (prev_id == kBos && !p.empty() && p[0] == ' ') return p.substr(1);
  return p;
}

StatusOr<std::string> SpTokenizer::decode(const std::vector<int32_t>& ids, int32_t prev_id) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    int32_t id = ids[i];
    if (id != kBos && id != kEos) {
      StatusOr<std::string> piece = decode_piece(prev_id, id);
      if (!piece.ok()) return piece.status().with_context("position " + std::to_string(i));
      out += *piece;
    }
    prev_id = id;
  }
  return out;
}

}  // namespace grpo::runtime
