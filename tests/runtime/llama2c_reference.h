// llama2.c's own encode loop (dummy-prefix space, <0xXX> byte fallback, then repeated scans for the
// best-scoring adjacent pair, leftmost on ties): the slow reference the SpTokenizer tests compare
// against. Reads only the vocabulary (pieces and scores), never SpTokenizer::encode.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/sp_tokenizer.h"

namespace grpo::runtime {

inline std::vector<int32_t> naive_llama2c_encode(const SpTokenizer& tok, const std::string& text,
                                                 bool add_bos) {
  std::unordered_map<std::string, int32_t> lookup;  // first id of each piece
  for (int32_t i = 0; i < tok.vocab_size(); ++i) lookup.emplace(tok.piece(i), i);
  std::vector<int32_t> ids;
  if (add_bos) ids.push_back(SpTokenizer::kBos);
  const size_t first = ids.size();  // BOS never merges
  if (!text.empty()) ids.push_back(lookup.at(" "));
  std::string buf;
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if ((c & 0xC0) != 0x80) buf.clear();
    buf += static_cast<char>(c);
    if (i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80 && buf.size() < 4)
      continue;
    auto it = lookup.find(buf);
    if (it != lookup.end()) {
      ids.push_back(it->second);
    } else {
      for (unsigned char b : buf) ids.push_back(b + 3);
    }
    buf.clear();
  }
  while (true) {
    float best = -1e10f;
    int32_t best_id = -1;
    size_t best_i = 0;
    for (size_t i = first; i + 1 < ids.size(); ++i) {
      auto it = lookup.find(tok.piece(ids[i]) + tok.piece(ids[i + 1]));
      if (it != lookup.end() && tok.score(it->second) > best) {
        best = tok.score(it->second);
        best_id = it->second;
        best_i = i;
      }
    }
    if (best_id < 0) break;
    ids[best_i] = best_id;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_i) + 1);
  }
  return ids;
}

}  // namespace grpo::runtime
