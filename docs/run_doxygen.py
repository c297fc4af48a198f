#!/usr/bin/env python3
"""Build the API reference and check it (the `docs` target of meson).

Runs Doxygen on the configured Doxyfile into a fresh HTML directory, then
checks the result against the headers: every function they declare must
have an entry in the reference, and its comment must have made it there
(functions the headers leave uncommented are listed, not failed).  A
reference that lost the functions or their comments (a broken filter or
configuration) fails the build instead of being installed.

  usage: run_doxygen.py DOXYGEN DOXYFILE HTML_DIR HEADER...
"""
import html
import os
import re
import shutil
import subprocess
import sys


def declared_functions(headers):
    """Names of the cr_ functions the headers declare (comments, strings and
    preprocessor lines removed; function-pointer declarators skipped)."""
    names = []
    for h in headers:
        with open(h, encoding="utf-8") as f:
            src = f.read()
        src = re.sub(r"/\*.*?\*/|//[^\n]*", " ", src, flags=re.S)
        src = re.sub(r"^\s*#(?:[^\n]*\\\n)*[^\n]*", " ", src, flags=re.M)
        src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
        for m in re.finditer(r"\b(cr_[a-z]\w*)\s*\((?!\s*\*)", src):
            # a declaration, not a call inside a macro or an initializer:
            # preceded by a type (an identifier or '*')
            before = src[:m.start()].rstrip()
            if before and (before[-1] == "*" or re.search(r"\w$", before)):
                names.append(m.group(1))
    return sorted(set(names))


def text_of(fragment):
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split()


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    doxygen, doxyfile, out = sys.argv[1:4]
    headers = sys.argv[4:]
    if os.path.isdir(out):
        shutil.rmtree(out)  # no stale pages from removed declarations
    r = subprocess.run([doxygen, doxyfile], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    sys.stdout.write(r.stdout)
    if r.returncode != 0:
        sys.exit("doxygen failed (exit %d)" % r.returncode)

    pages = {}
    for name in os.listdir(out):
        if name.endswith("_8h.html"):
            with open(os.path.join(out, name), encoding="utf-8") as f:
                pages[name] = f.read()
    listed, described = set(), set()
    for page in pages.values():
        # summary rows: <td class="memItemRight" ...><a class="el" href=...>cr_add</a> (...)
        # followed, if there is a brief, by a <td class="mdescRight"> row
        for m in re.finditer(r'<td class="memItemRight"[^>]*><a class="el"[^>]*>(cr_\w+)</a>\s*\('
                             r'.*?</tr>\s*(<tr class="memdesc[^"]*"><td[^>]*>&#160;</td>'
                             r'<td class="mdescRight">(.*?)</td>)?', page, re.S):
            listed.add(m.group(1))
            if m.group(3) and text_of(m.group(3)):
                described.add(m.group(1))
        # detailed entries: <h2 class="memtitle">...cr_add()</h2> ... <div class="memdoc">...</div>
        for m in re.finditer(r'<h2 class="memtitle">.*?(cr_\w+)\(\)</h2>.*?'
                             r'<div class="memdoc">(.*?)</div>', page, re.S):
            if text_of(m.group(2)):
                described.add(m.group(1))
    funcs = declared_functions(headers)
    missing = [f for f in funcs if f not in listed]
    bare = [f for f in funcs if f in listed and f not in described]
    print("API reference: %d of the %d functions the headers declare are in %s, %d with their "
          "comment" % (len(funcs) - len(missing), len(funcs), out, len(funcs) - len(missing) - len(bare)))
    if bare:
        print("without a comment of their own in the headers (%d): %s" % (len(bare), " ".join(bare)))
    if missing or len(funcs) < 10:
        sys.exit("error: functions missing from the reference: %s" % " ".join(missing or ["(all)"]))
    if len(bare) > len(funcs) // 2:
        sys.exit("error: most functions lost their comments: is docs/doxygen_filter.py broken?")


if __name__ == "__main__":
    main()
