#include "runtime/chat_template.h"

#include <algorithm>
#include <cctype>

namespace grpo::runtime {

namespace {

// Qwen2.5 control strings.
constexpr const char* kImStart = "<|im_start|>";
constexpr const char* kImEnd = "<|im_end|>";
constexpr const char* kQwenDefaultSystem =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

// DeepSeek-R1 control strings (U+FF5C FULLWIDTH VERTICAL LINE, U+2581 LOWER ONE EIGHTH BLOCK).
constexpr const char* kDsBos = "<｜begin▁of▁sentence｜>";
constexpr const char* kDsEos = "<｜end▁of▁sentence｜>";
constexpr const char* kDsUser = "<｜User｜>";
constexpr const char* kDsAssistant = "<｜Assistant｜>";
constexpr const char* kDsToolOutputsBegin = "<｜tool▁outputs▁begin｜>";
constexpr const char* kDsToolOutputsEnd = "<｜tool▁outputs▁end｜>";
constexpr const char* kDsToolOutputBegin = "<｜tool▁output▁begin｜>";
constexpr const char* kDsToolOutputEnd = "<｜tool▁output▁end｜>";

// The R1-Zero instruction of the DeepSeek-R1 paper (table 1).
constexpr const char* kR1ZeroSystem =
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves "
    "it. The assistant first thinks about the reasoning process in the mind and then provides the "
    "user with the answer. The reasoning process and answer are enclosed within <think> </think> "
    "and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>.";

Status unknown_role(ChatFormat format, size_t index, const std::string& role) {
  return invalid_argument(std::string("chat format ") + chat_format_name(format) + ": message " +
                          std::to_string(index) + " has role '" + role + "', which it does not support");
}

StatusOr<std::string> render_qwen(const std::vector<ChatMessage>& messages, bool gen) {
  std::string out;
  const bool first_is_system = messages[0].role == "system";
  out += kImStart;
  out += "system\n";
  out += first_is_system ? messages[0].content : kQwenDefaultSystem;
  out += kImEnd;
  out += "\n";
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || m.role == "assistant" || (m.role == "system" && i > 0)) {
      out += kImStart + m.role + "\n" + m.content + kImEnd + "\n";
    } else if (m.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") out += std::string(kImStart) + "user";
      out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
      if (i + 1 == messages.size() || messages[i + 1].role != "tool") out += std::string(kImEnd) + "\n";
    } else if (m.role != "system") {
      return unknown_role(ChatFormat::kQwen25Instruct, i, m.role);
    }
  }
  if (gen) out += std::string(kImStart) + "assistant\n";
  return out;
}

StatusOr<std::string> render_deepseek(const std::vector<ChatMessage>& messages, bool gen) {
  std::string system;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") system = m.content;  // the last one wins, as in the template
  }
  std::string out = std::string(kDsBos) + system;
  bool in_tool_outputs = false, first_output = true;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      in_tool_outputs = false;
      out += kDsUser + m.content;
    } else if (m.role == "assistant") {
      if (in_tool_outputs) {
        out += kDsToolOutputsEnd + m.content + kDsEos;
        in_tool_outputs = false;
      } else {
        std::string content = m.content;
        size_t think_end = content.rfind("</think>");
        if (think_end != std::string::npos) content = content.substr(think_end + 8);
        out += kDsAssistant + content + kDsEos;
      }
    } else if (m.role == "tool") {
      in_tool_outputs = true;
      if (first_output) {
        out += std::string(kDsToolOutputsBegin) + kDsToolOutputBegin + m.content + kDsToolOutputEnd;
        first_output = false;
      } else {
        out += "\n" + (kDsToolOutputBegin + m.content) + kDsToolOutputEnd;
      }
    } else if (m.role != "system") {
      return unknown_role(ChatFormat::kDeepSeekR1Distill, i, m.role);
    }
  }
  if (in_tool_outputs) out += kDsToolOutputsEnd;
  if (gen && !in_tool_outputs) out += std::string(kDsAssistant) + "<think>\n";
  return out;
}

StatusOr<std::string> render_r1_zero(const std::vector<ChatMessage>& messages, bool gen) {
  const bool first_is_system = messages[0].role == "system";
  std::string out = first_is_system ? messages[0].content : kR1ZeroSystem;
  auto turn = [&](const char* who, const std::string& content) {
    if (!out.empty()) out += "\n";
    out += who;
    if (!content.empty()) out += " " + content;
  };
  for (size_t i = first_is_system ? 1 : 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      turn("User:", m.content);
    } else if (m.role == "assistant") {
      turn("Assistant:", m.content);
    } else {
      return unknown_role(ChatFormat::kR1Zero, i, m.role);
    }
  }
  if (gen) turn("Assistant:", "");
  return out;
}

}  // namespace

const char* chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::kQwen25Instruct: return "qwen2.5-instruct";
    case ChatFormat::kDeepSeekR1Distill: return "deepseek-r1-distill-qwen";
    case ChatFormat::kR1Zero: return "r1-zero";
  }
  return "?";
}

StatusOr<ChatFormat> parse_chat_format(std::string_view name) {
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (n == "qwen2.5-instruct" || n == "qwen" || n == "qwen2.5") return ChatFormat::kQwen25Instruct;
  if (n == "deepseek-r1-distill-qwen" || n == "deepseek-r1" || n == "r1-distill")
    return ChatFormat::kDeepSeekR1Distill;
  if (n == "r1-zero" || n == "r1zero" || n == "plain") return ChatFormat::kR1Zero;
  return invalid_argument("unknown chat format '" + std::string(name) +
                          "' (known: qwen2.5-instruct, deepseek-r1-distill-qwen, r1-zero)");
}

StatusOr<std::string> render_chat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt) {
  if (messages.empty()) return invalid_argument("render_chat: no messages");
  switch (format) {
    case ChatFormat::kQwen25Instruct: return render_qwen(messages, add_generation_prompt);
    case ChatFormat::kDeepSeekR1Distill: return render_deepseek(messages, add_generation_prompt);
    case ChatFormat::kR1Zero: return render_r1_zero(messages, add_generation_prompt);
  }
  return invalid_argument("render_chat: unknown format");
}

std::string chat_end_of_turn(ChatFormat format) {
  switch (format) {
    case ChatFormat::kQwen25Instruct: return kImEnd;
    case ChatFormat::kDeepSeekR1Distill: return kDsEos;
    case ChatFormat::kR1Zero: return "";
  }
  return "";
}

}  // namespace grpo::runtime
