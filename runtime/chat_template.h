// Chat templates: turn a list of chat messages into the prompt text a model was trained on.
//
// Hard-coded renderers (no Jinja engine) that reproduce the Hugging Face chat templates byte for
// byte for plain text messages:
//   kQwen25Instruct     Qwen2.5-Instruct (and Qwen2.5-Math-Instruct): <|im_start|>role\n...<|im_end|>\n
//                       turns, the default Qwen system prompt when the first message is not a
//                       system message, tool messages wrapped in <tool_response> inside a user turn.
//   kDeepSeekR1Distill  DeepSeek-R1-Distill-Qwen: <｜begin▁of▁sentence｜>, the (last) system prompt
//                       bare, <｜User｜>/<｜Assistant｜> turns, assistant replies ended by
//                       <｜end▁of▁sentence｜> with their reasoning (everything up to the last
//                       </think>) removed, tool outputs in <｜tool▁outputs▁begin｜> blocks; the
//                       generation prompt opens "<｜Assistant｜><think>\n".
//   kR1Zero             the plain R1-Zero prompt (DeepSeek-R1 paper, table 1) for base models:
//                       "<instruction>\nUser: <question>\nAssistant: <reply>..." where the
//                       instruction is the paper's text unless the first message is a system message;
//                       the generation prompt is "\nAssistant:".
// Tool calls inside assistant messages are not modelled (messages carry plain text content).
//
// Stateless functions; safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace grpo::runtime {

enum class ChatFormat { kQwen25Instruct, kDeepSeekR1Distill, kR1Zero };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" or "tool" (kR1Zero: no "tool")
  std::string content;
};

// "qwen2.5-instruct", "deepseek-r1-distill-qwen", "r1-zero".
const char* chat_format_name(ChatFormat format);
// Accepts the names above (case-insensitive) and the aliases "qwen", "qwen2.5", "deepseek-r1",
// "r1-distill", "r1zero", "plain".
StatusOr<ChatFormat> parse_chat_format(std::string_view name);

// The prompt text. INVALID_ARGUMENT for an empty list or a role the format does not know.
StatusOr<std::string> render_chat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt);

// The text that ends an assistant turn in the format ("<|im_end|>", "<｜end▁of▁sentence｜>"; empty
// for kR1Zero, whose replies end at the model's EOS): a natural stop string for generation.
std::string chat_end_of_turn(ChatFormat format);

}  // namespace grpo::runtime
