#!/usr/bin/env python3
"""Doxygen INPUT_FILTER: read chainrule's plain C comments as documentation.

The public headers are documented with ordinary /* ... */ comments, written
to be read in the header.  This filter rewrites them, on the fly, into the
Doxygen forms that mean the same thing, so the headers need no markup:

  - a header's first comment describes the file (@file); the umbrella
    header's becomes the main page (@mainpage);
  - a comment directly above a declaration or #define (no blank line
    between) documents it (/** ... */); one after code on the same line
    documents that member or declaration (/**< ... */);
  - "/* ---- title ..." section comments become member groups (@name, with
    the rest of the comment as the group's description);
  - blocks indented under a line of text (examples, tables of arguments)
    become code blocks (@code ... @endcode), so they keep their layout;
  - Doxygen's special characters in prose (\\ @ <) are escaped, and "e.g. "
    no longer ends the one-sentence brief description.

Other comments (detached by a blank line, before #include/#if, ...) stay
plain and are ignored by Doxygen.  The output has exactly the input's
lines, so Doxygen's line numbers are the header's.

  usage: doxygen_filter.py FILE     (writes the filtered file to stdout)
"""
import os
import re
import sys

SECTION = re.compile(r"^/\* ---- ")
LIST_ITEM = re.compile(r"^(\d+\.|[-+*]) ")
PLAIN_DIRECTIVE = re.compile(r"^\s*#\s*(include|if|ifdef|ifndef|elif|else|endif|undef|pragma)\b")


def tokens(src):
    """Split src into ("code" | "comment", text) pieces; strings and character
    literals stay inside code, // comments are code (left alone)."""
    out, i, n, start = [], 0, len(src), 0
    while i < n:
        c = src[i]
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            i = j + 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            if start < i:
                out.append(["code", src[start:i]])
            out.append(["comment", src[i:j]])
            start = i = j
        else:
            i += 1
    if start < n:
        out.append(["code", src[start:]])
    return out


def escape_prose(text):
    text = text.replace("\\", "\\\\")
    text = re.sub(r"@(?=[A-Za-z{}])", r"\\@", text)
    text = re.sub(r"<(?=[A-Za-z/!])", r"\\<", text)
    return re.sub(r"\b(e\.g|i\.e|etc|vs)\. ", r"\1.\\ ", text)


def split_lines(body):
    """The comment's lines as [decoration, text]: '/*' + ' ' on the first,
    ' * ' on the others; the closing '*/' is kept in the last text."""
    lines = []
    for k, line in enumerate(body.split("\n")):
        if k == 0:
            m = re.match(r"(/\* ?)(.*)$", line, re.S)
        else:
            m = re.match(r"(\s*\*(?!/) ?|\s*)(.*)$", line, re.S)
        lines.append([m.group(1), m.group(2)])
    last = lines[-1]
    assert last[1].endswith("*/"), last
    last[1] = last[1][:-2]
    return lines


def join_lines(lines):
    return "\n".join(d + t for d, t in lines) + "*/"


def mark_up(lines):
    """Code blocks for indented runs; escapes for prose.  In place."""
    in_code = in_list = False
    prev = None  # index of the previous line

    def is_indented(text):
        return text.strip() != "" and len(text) - len(text.lstrip(" ")) >= 2

    for k, line in enumerate(lines):
        text = line[1]
        blank = text.strip() == ""
        indented = is_indented(text)
        if in_code and blank:
            # a blank line inside an example: the block goes on if the next
            # line with text is indented too
            following = [t for _, t in lines[k + 1:] if t.strip()]
            if following and is_indented(following[0]):
                prev = k
                continue
        if in_code and not indented:
            lines[prev][1] = lines[prev][1].rstrip() + " @endcode"
            in_code = False
        if blank:
            in_list = False
        elif indented and not in_code and not in_list and prev is not None:
            if lines[prev][1].strip() == "":
                lines[prev][1] = "@code"
            else:
                lines[prev][1] = lines[prev][1].rstrip() + " @code"
            in_code = True
        elif not indented:
            in_list = bool(LIST_ITEM.match(text))
        if not in_code and not blank:
            line[1] = escape_prose(text)
        prev = k
    if in_code:
        last = lines[-1]
        last[1] = last[1].rstrip() + " @endcode "


def statements(code):
    """(start, end) of each top-level ';'-terminated statement of code."""
    out, depth, start = [], 0, 0
    for i, c in enumerate(code):
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == ";" and depth == 0:
            out.append((start, i + 1))
            start = i + 1
    return out


FUNC_NAME = re.compile(r"([A-Za-z_]\w*)\s*\(")


def prototype_name(stmt):
    """The function a prototype declares, or None (not a prototype)."""
    if "{" in stmt or "#" in stmt or "typedef" in stmt:
        return None
    m = FUNC_NAME.search(stmt)
    if not m or re.match(r"\s*\(\s*\*", stmt[m.end() - 1:]):
        return None
    return m.group(1)


def refer_run(code):
    """One comment above several prototypes on consecutive lines documents
    them all; Doxygen would give it to the first only.  The others get a
    brief "See <first>()." pointing at it (appended after their ';')."""
    stmts = statements(code)
    if not stmts:
        return code
    first = prototype_name(code[stmts[0][0]:stmts[0][1]])
    if not first:
        return code
    cut = []
    for a, b in stmts[1:]:
        gap = code[a:b]
        lead = gap[:len(gap) - len(gap.lstrip())]
        if lead.count("\n") != 1 or gap.lstrip().startswith("#"):
            break  # a blank line, or a directive, ends the run
        if not prototype_name(gap):
            break
        if "\n" not in code[b:]:
            break  # a comment of its own follows on its line
        cut.append(b)
    for b in reversed(cut):
        code = code[:b] + " /**< See " + first + "(). */" + code[b:]
    return code


def title_case(s):
    return s[:1].upper() + s[1:]


def filter_header(path, src):
    toks = tokens(src)
    name = os.path.basename(path)
    first_comment = True
    group_open = False
    for k, (kind, text) in enumerate(toks):
        if kind != "comment":
            continue
        before = toks[k - 1][1] if k > 0 else ""
        line_before = before[before.rfind("\n") + 1:]
        after = toks[k + 1][1] if k + 1 < len(toks) else ""
        trailing = line_before.strip() != ""
        if trailing and PLAIN_DIRECTIVE.match(line_before):
            continue  # "#include <x.h> /* why */": nothing to document
        if first_comment and not trailing:
            first_comment = False
            lines = split_lines(text)
            mark_up(lines)
            head = lines[0][1]
            if name == "chainrule.h":
                # "chainrule.h — a small ..." -> the main page's title
                lines[0][1] = "@mainpage " + re.sub(r"^chainrule\.h\b", "chainrule", head)
            else:
                # "chainrule/base.h — dtypes ..." names the file itself
                m = re.match(r"(\S+\.h)\s+(?:—|-+)\s+(.*)$", head, re.S)
                if m and m.group(1).endswith(name):
                    head = m.group(1) + " " + m.group(2)[:1].upper() + m.group(2)[1:]
                else:
                    head = name + " " + head
                lines[0][1] = "@file " + head
            toks[k][1] = join_lines(lines).replace("/*", "/**", 1)
            continue
        first_comment = False
        if trailing:
            lines = split_lines(text)
            mark_up(lines)
            toks[k][1] = join_lines(lines).replace("/*", "/**<", 1)
            continue
        if SECTION.match(text) and line_before == "":
            # "/* ---- title (more) ..." -> "/** @name Title", the rest its
            # description.  @name takes its whole line as the title, so the
            # rest of a multi-line comment's first line moves to the second.
            lines = split_lines(text)
            title = lines[0][1][len("---- "):].rstrip()
            cut = title.find("(")
            if cut > 0 and len(lines) > 1:
                title, rest = title[:cut].rstrip(), title[cut:]
                lines[1][1] = rest + " " + lines[1][1].lstrip()
            lines[0][1] = ""
            mark_up(lines)
            lines[0][1] = "@name " + title_case(title) + (" " if len(lines) == 1 else "")
            opening = "/** @} */ " if group_open else ""
            toks[k][1] = opening + join_lines(lines).replace("/*", "/**", 1) + " /** @{ */"
            group_open = True
            continue
        # a leading comment documents what directly follows it
        nxt = after
        if "\n" in nxt:
            same_line, rest_text = nxt.split("\n", 1)
        else:
            same_line, rest_text = nxt, ""
        if same_line.strip():
            documents = True  # "/* ... */ int x;"
        else:
            next_line = rest_text.split("\n", 1)[0]
            documents = (next_line.strip() != "" and not PLAIN_DIRECTIVE.match(next_line)
                         and k + 1 < len(toks) and rest_text.strip() != "")
            # followed directly by another comment: leave it plain
            if next_line.strip() == "" and k + 2 < len(toks):
                documents = False
        if documents:
            lines = split_lines(text)
            mark_up(lines)
            toks[k][1] = join_lines(lines).replace("/*", "/**", 1)
            if k + 1 < len(toks):
                toks[k + 1][1] = refer_run(toks[k + 1][1])
    out = "".join(t for _, t in toks)
    if group_open:
        out = out.rstrip("\n") + " /** @} */\n"
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        src = f.read()
    sys.stdout.write(filter_header(path, src) if path.endswith(".h") else src)


if __name__ == "__main__":
    main()
