"""The rendered docs site (`python tools/docs.py site` -> _docs/), checked in a real browser.

Debian's Chromium, driven by Playwright, opens every page of the site served over HTTP on 127.0.0.1: pages render
(title, heading, sidebar), figures load, every exported symbol has its API entry (nbdev's show_doc) on its chapter,
the tutorials show their outputs (figures, the coloured trained-token spans), sidebar and in-text links lead to pages
and anchors that exist, and no page logs a JS error or fails to load a resource. What a reader would take for a fault
of the book fails too: a section heading with nothing under it, a figure the text promises on a page without one, a
warning in a cell's output (the example runs as the reader should run it, or the warning is explained, not shown).
Full-page screenshots of the index, a chapter with a figure and every tutorial go to _screenshots/ (their paths are
printed).

The site is built first when it is missing or older than a notebook. Without Chromium the test is skipped, unless
MLXTUNE_REQUIRE_BROWSER=1 (as in .ci/run): then it fails."""
import ast, functools, json, os, re, shutil, subprocess, sys, threading, urllib.error, urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urlsplit
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS, DOCS, SHOTS = ROOT/'nbs', ROOT/'_docs', ROOT/'_screenshots'
KNOWN = 'trainer.html', 'train'    # a function whose API entry must be on its chapter, whatever the symbol index says
LINKING = 'trainer.html'           # a chapter whose text links (nbdev's backticked names) to another chapter
CHROMIUM = '/usr/bin/chromium'     # Debian's package (`apt-get install chromium`); no `playwright install`
# Chromium on our machines: without the background-networking flags it stalls on refused connections.
# Playwright adds a fresh --user-data-dir (a temporary directory) itself.
ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync']

def html_path(nb):
    "Where the site puts notebook `nb` (a path under nbs/): tools/docs.py names pages as Quarto does (00_data -> data.html)."
    rel = nb.relative_to(NBS)
    return rel.with_name(re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())).with_suffix('.html').as_posix()

def notebooks(folder):
    "The notebooks nbdev renders in `folder` (not `_`- or `.`-prefixed ones)."
    return [p for p in sorted(folder.glob('*.ipynb')) if not p.name.startswith(('_', '.'))]

SOURCES = {html_path(p): p for p in [*notebooks(NBS), *notebooks(NBS/'tutorials')]}
CHAPTERS = [h for h in SOURCES if h != 'index.html' and '/' not in h]
TUTORIALS = [h for h in SOURCES if h.startswith('tutorials/')]
PAGES = ['index.html', *CHAPTERS, *TUTORIALS]
HIDDEN = re.compile(r'^#\|\s*(hide|include:\s*false|output:\s*false)\s*$', re.M)

def outputs(path):
    "The output data (mime -> content) of the cells of page `path`'s notebook whose outputs the page shows."
    cells = json.loads(SOURCES[path].read_text())['cells']
    return [o.get('data', {}) for c in cells if not HIDDEN.search(''.join(c['source'])) for o in c.get('outputs', [])]

def figures(path):
    "How many figures (images, or HTML outputs holding one) the notebook of page `path` shows."
    return sum(any(k.startswith('image/') for k in d) or '<img' in ''.join(d.get('text/html', '')) for d in outputs(path))

@functools.cache
def modidx():
    "nbdev's symbol index (mlxtune/_modidx.py), read without importing the package."
    src = (ROOT/'mlxtune'/'_modidx.py').read_text()
    return ast.literal_eval(src[src.index('d = ') + 4:])

def api(path):
    "{anchor: name} of the public functions and classes that nbdev documents on chapter `path`."
    return {url.split('#')[1]: name for mod, syms in modidx()['syms'].items() for sym, (url, _) in syms.items()
            for name in [sym[len(mod) + 1:]] if url.split('#')[0] == path and '.' not in name and not name.startswith('_')}

@functools.cache
def published():
    """The deployed site's URL (nbdev's doc_host + doc_baseurl): the prefix of nbdev's doc links before tools/docs.py;
    None when pyproject.toml names no Documentation URL (the site is deployed nowhere)."""
    s = modidx()['settings']
    if not s.get('doc_host'): return None
    return '/'.join(p.strip('/') for p in (s.get('doc_host', ''), s.get('doc_baseurl', '')) if p.strip('/')) + '/'

def no_browser(why):
    if os.environ.get('MLXTUNE_REQUIRE_BROWSER') == '1':
        pytest.fail(f"{why}: install Debian's chromium (apt-get install chromium), as .ci/run does", pytrace=False)
    pytest.skip(f"{why}: the docs browser test needs Debian's chromium (apt-get install chromium) and playwright (.[dev])")

def stale():
    "No site yet, or a notebook or the builder changed since it was built."
    idx = DOCS/'index.html'
    if not idx.exists(): return True
    srcs = [*SOURCES.values(), *NBS.glob('*.yml'), ROOT/'tools'/'docs.py']
    return any(p.stat().st_mtime > idx.stat().st_mtime for p in srcs)

class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

@pytest.fixture(scope='module')
def site():
    "Builds _docs/ when missing or stale, serves it on a free port of 127.0.0.1; yields the base URL."
    if stale():
        r = subprocess.run([sys.executable, 'tools/docs.py', 'site'], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0 and (DOCS/'index.html').exists(), f'docs build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    srv = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(DOCS)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try: yield f'http://127.0.0.1:{srv.server_address[1]}/'
    finally: srv.shutdown(); srv.server_close()

@pytest.fixture(scope='module')
def browser():
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which('chromium')
    if not exe: no_browser('no Chromium (/usr/bin/chromium)')
    try: from playwright.sync_api import sync_playwright
    except ImportError: no_browser('the Python package playwright is missing (pip install -e ".[dev]")')
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=ARGS, headless=True)
        try: yield b
        finally: b.close()

class Tab:
    "A browser tab on the site that records what goes wrong: JS errors, failed or off-site requests, HTTP errors."
    def __init__(self, browser, base):
        self.base, self.problems = base, []
        self.ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
        self.page = pg = self.ctx.new_page()
        pg.set_default_timeout(10_000)
        # the site must be self-contained (offline readers, offline CI, no third-party requests): a request that leaves
        # it is a failure (tools/docs.py drops the theme's Google Fonts @import; the theme falls back to system fonts)
        def route(r):
            url = r.request.url
            if url.startswith((base, 'data:')): r.continue_()
            else: self.problems.append(f'request outside the site: {url}'); r.abort()
        self.ctx.route('**/*', route)
        pg.on('console', lambda m: m.type == 'error' and self.problems.append(f'console error: {m.text} at {m.location}'))
        pg.on('pageerror', lambda e: self.problems.append(f'uncaught JS error: {e}'))
        pg.on('requestfailed', lambda r: self.problems.append(f'request failed: {r.url} ({r.failure})'))
        pg.on('response', lambda r: r.status >= 400 and self.problems.append(f'HTTP {r.status}: {r.url}'))

    def open(self, path):
        "Goes to `path` of the site and waits for the load event (images, css and js are in)."
        resp = self.page.goto(self.base + path, wait_until='load')
        assert resp is not None and resp.status == 200, f'{path}: HTTP {resp and resp.status}'
        return self.page

    def path(self): return self.page.url[len(self.base):].split('#')[0]

    def images(self):
        "[(src, loaded)] for every <img> of the page; lazy images are made eager and decoded first."
        return [tuple(o) for o in self.page.evaluate('''async () => Promise.all([...document.images].map(async i => {
            i.loading = 'eager'; try { await i.decode() } catch (e) {}
            return [i.currentSrc.slice(0, 60), i.complete && i.naturalWidth > 0] }))''')]

    def coloured_spans(self):
        "How many visible spans of the page's content have a background colour of their own (e.g. `data.mask_html`'s)."
        return self.page.evaluate('''() => [...document.querySelectorAll('main span[style*="background"]')].filter(s => {
            const r = s.getBoundingClientRect(), c = getComputedStyle(s).backgroundColor;
            return r.width > 0 && r.height > 0 && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent' }).length''')

    def api_entries(self, entries):
        """Of {anchor: name}, those whose show_doc entry is not where nbdev's links point (`#anchor`): a heading `name`
        followed by a signature `name(...)`; as (name, what is wrong)."""
        return [tuple(o) for o in self.page.evaluate('''entries => Object.entries(entries).map(([id, name]) => {
            const h = document.getElementById(id);
            if (!h || !h.closest('main')) return [name, `no #${id}`];
            if (!/^H[2-4]$/.test(h.tagName) || h.textContent.trim() !== name)
                return [name, `#${id} is a <${h.tagName.toLowerCase()}> "${h.textContent.trim().split('\\n')[0].slice(0, 40)}", not the entry`];
            const shown = e => e.getClientRects().length > 0;
            if (!shown(h)) return [name, `#${id} is hidden`];
            for (let e = h.nextElementSibling; e && !/^H[1-4]$/.test(e.tagName); e = e.nextElementSibling)
                if ([...e.querySelectorAll('pre')].some(shown) && e.textContent.includes(name + '(')) return null;
            return [name, `no signature under #${id}`] }).filter(x => x)''', entries)]

    def at(self, path):
        "The page `path`, opened unless the tab shows it already (the tests of one page share one load)."
        return self.page if self.path() == path else self.open(path)

    def empty_sections(self):
        """Headings of the page's text with nothing under them: what follows a heading (in reading order, skipping
        separators) is a heading of the same or a higher level, or the end of the page. As ['h2 "Resume"', ...]."""
        return self.page.evaluate('''() => {
            const main = document.querySelector('main'), items = [];
            const skip = 'header#title-block-header, nav, .page-navigation, .back-to-top, .code-copy-button, '
                + '#quarto-appendix';
            const w = document.createTreeWalker(main, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
            for (let n = w.nextNode(); n; n = w.nextNode()) {
                const el = n.nodeType === 1 ? n : n.parentElement;
                if (el.closest(skip) || !el.getClientRects().length) continue;
                if (n.nodeType === 1 && /^H[1-6]$/.test(n.tagName)) items.push([+n.tagName[1], n.textContent.trim()]);
                else if (el.closest('h1, h2, h3, h4, h5, h6')) continue;
                else if (n.nodeType === 3 ? n.textContent.trim() : n.matches('img, svg, canvas, iframe, video, table'))
                    items.push(null);
            }
            return items.flatMap((it, i) => it && (i + 1 === items.length || (items[i + 1] && items[i + 1][0] <= it[0]))
                ? [`h${it[0]} "${it[1]}"`] : []) }''')

    def prose_and_figures(self):
        "(the page's prose: paragraphs and list items outside code and cell outputs, how many figures it shows)."
        return tuple(self.page.evaluate('''() => [
            [...document.querySelectorAll('main p, main li, main div.description')]
                .filter(e => !e.closest('pre, .sourceCode, .cell-output')).map(e => e.innerText),
            document.querySelectorAll('main img, main .cell-output svg, main figure svg').length]'''))

    def output_texts(self):
        "The text of the page's cell outputs, but show_doc's API entries (text/markdown): streams, reprs, HTML."
        return self.page.evaluate('''() => [...document.querySelectorAll('main .cell-output')]
            .filter(e => !e.matches('.cell-output-markdown')).map(e => e.innerText)''')

    def check(self):
        "Asserts that nothing went wrong since the test began."
        assert not self.problems, f'{self.path()}:\n  ' + '\n  '.join(self.problems)

    def shot(self, name, capsys):
        SHOTS.mkdir(exist_ok=True)
        f = SHOTS/name
        self.page.screenshot(path=str(f), full_page=True)
        with capsys.disabled(): print(f'\nscreenshot: {f.relative_to(ROOT)}', end='')

@pytest.fixture(scope='module')
def shared_tab(browser, site):
    t = Tab(browser, site)
    yield t
    t.ctx.close()

@pytest.fixture
def tab(shared_tab):
    "The module's browser tab, its record of problems emptied for each test."
    shared_tab.problems.clear()
    return shared_tab

def rendered(tab, path):
    "Opens `path`; checks what every page has: a title, an h1, the whole sidebar, loaded images."
    pg = tab.open(path)
    assert 'mlxtune' in pg.title(), f'{path}: title {pg.title()!r}'
    assert pg.locator('h1').first.inner_text().strip(), f'{path}: no h1'
    assert pg.locator('#quarto-sidebar a.sidebar-link').count() >= len(PAGES), f'{path}: sidebar incomplete'
    bad = [src for src, ok in tab.images() if not ok]
    assert not bad, f'{path}: images that did not load: {bad}'
    return pg

@functools.lru_cache(maxsize=None)
def fetch(url):
    "(HTTP status, ids in the page) of a URL of the site."
    try:
        with urllib.request.urlopen(url, timeout=10) as r: return r.status, frozenset(re.findall(r'\bid="([^"]+)"', r.read().decode()))
    except urllib.error.HTTPError as e: return e.code, frozenset()

def dead_links(tab):
    """Links of the page into the site whose page is not served (not 200) or whose #anchor is not in the page,
    and links into the deployed site, which tools/docs.py makes relative (so that they work in any copy of the site)."""
    dead = []
    for href in sorted(set(tab.page.evaluate('() => [...document.querySelectorAll("a[href]")].map(a => a.href)'))):
        if published() and href.startswith(published()): dead.append(f'{href}: a link into the deployed site, not relative')
        if not href.startswith(tab.base): continue
        url, frag = urldefrag(href)
        status, ids = fetch(url)
        if status != 200: dead.append(f'{href}: HTTP {status}')
        elif frag and frag not in ids: dead.append(f'{href}: no id="{frag}" in the page')
    return dead

def test_every_notebook_has_a_page(browser, site):
    assert CHAPTERS and 'tutorials/bring_your_data.html' in TUTORIALS, (CHAPTERS, TUTORIALS)
    missing = [p for p in PAGES if not (DOCS/p).is_file()]
    assert not missing, f'notebooks without a page in _docs/: {missing}'

@pytest.mark.parametrize('path', PAGES)
def test_page(tab, path):
    "Every page: renders with its figures and API entries, no JS errors or failed requests, its links resolve."
    pg = rendered(tab, path)
    n = len(tab.images())
    assert n >= figures(path), f'{path}: {figures(path)} figures in the notebook, {n} on the page'
    # show_doc names the chapter's own classes without `__main__.` (tools/docs.py's unmain)
    text = pg.locator('main').inner_text()
    assert '__main__.' not in text, f'{path}: `__main__.` in the text'
    # a widget output reads as a note on a static page, not as its Python repr (tools/docs.py's tidy)
    widgets = sum('application/vnd.jupyter.widget-view+json' in d for d in outputs(path))
    assert text.count('An interactive widget') >= widgets and 'children=(' not in text, f'{path}: a widget shown as its repr'
    missing = tab.api_entries(api(path))
    assert not missing, f'{path}: API entries (show_doc) not where the links point: {missing}'
    dead = dead_links(tab)
    assert not dead, f'{path}: dead links:\n  ' + '\n  '.join(dead)
    tab.check()

# Words that promise a figure: "figure" (not "figure out"; not "figures", often numbers: "the figures above"),
# "plot below", "the following plot".
PROMISE = re.compile(r'\bfigure\b(?!\s+out\b)|\bplots?\s+below\b|\b(?:below|following)\s+plots?\b', re.I)
# A warning in an output: Python's (Warning:, UserWarning, FutureWarning, ...), a logger's `warning:`, and mlxtune's
# slow-BLAS notice ("... reference BLAS, 10-30x slower than an optimised one"), which a reader must not take as normal.
WARNING = re.compile(r'\b\w*Warning\b|(?i:\bwarning:|slow BLAS|BLAS\b[^\n]{0,60}\bslower than)')

@pytest.mark.parametrize('path', PAGES)
def test_no_empty_section(tab, path):
    "Every section heading has something under it before the next heading of its level (or a higher one)."
    tab.at(path)
    empty = tab.empty_sections()
    assert not empty, f'{path}: headings with nothing under them: {empty}'

@pytest.mark.parametrize('path', PAGES)
def test_promised_figure_shown(tab, path):
    "A page whose text speaks of a figure (or a plot below) shows one."
    tab.at(path)
    prose, shown = tab.prose_and_figures()
    promises = [s.strip()[:120] for s in prose if PROMISE.search(s)]
    assert shown or not promises, f'{path}: the text promises a figure, the page shows none: {promises}'

@pytest.mark.parametrize('path', PAGES)
def test_no_warning_in_outputs(tab, path):
    "No cell output shows a warning: the examples run as a reader should run them."
    tab.at(path)
    lines = dict.fromkeys(l.strip()[:160] for o in tab.output_texts() for l in o.splitlines() if WARNING.search(l))
    assert not lines, f'{path}: warnings in cell outputs:\n  ' + '\n  '.join(lines)

def test_index(tab, capsys):
    pg = rendered(tab, 'index.html')
    assert pg.title().strip() == 'mlxtune'
    sidebar = pg.locator('#quarto-sidebar')
    assert sidebar.is_visible()
    links = {urlsplit(h).path.lstrip('/') for h in sidebar.locator('a.sidebar-link').evaluate_all('as => as.map(a => a.href)')}
    assert set(PAGES) <= links, f'not in the sidebar: {set(PAGES) - links}'
    for p in CHAPTERS: assert sidebar.locator(f'a.sidebar-link[href="{p}"]').is_visible(), f'{p} hidden in the sidebar'
    imgs = tab.images()
    assert imgs and all(ok for _, ok in imgs), f"the README's figure: {imgs}"
    assert pg.locator('main img').first.bounding_box()['width'] > 300, "the README's figure is tiny"
    tab.check()
    tab.shot('index.png', capsys)

def test_chapter(tab, capsys):
    "A chapter with a figure and an API reference: the figure loads, the entries are there."
    with_both = [p for p in CHAPTERS if figures(p) and api(p)]
    assert with_both, 'no chapter shows both a figure and an API reference'
    path = with_both[0]
    pg = rendered(tab, path)
    imgs = tab.images()
    assert len(imgs) >= figures(path) and all(ok for _, ok in imgs), f'{path} figures: {imgs}'
    assert pg.locator('main img').first.bounding_box()['width'] > 200, f'{path}: the figure is tiny'
    assert not tab.api_entries(api(path)), f'{path}: API entries missing'
    tab.check()
    tab.shot(path.replace('.html', '.png'), capsys)

def test_known_api_entry(tab):
    "The trainer's `train` has show_doc's entry, listed in the table of contents."
    path, name = KNOWN
    pg = rendered(tab, path)
    assert tab.api_entries({name.lower(): name}) == [], f'{path}: no API entry for {name}'
    assert pg.locator(f'#TOC a[href="#{name.lower()}"]').count() == 1, f'{name} not in the table of contents of {path}'
    tab.check()

@pytest.mark.parametrize('path', TUTORIALS)
def test_tutorial(tab, capsys, path):
    "Every tutorial renders with its outputs: the figures and the coloured spans its notebook holds."
    pg = rendered(tab, path)
    assert pg.locator('main .cell-output, main .cell-output-display').count(), f'{path}: no cell outputs (notebook not run?)'
    imgs = tab.images()
    assert len(imgs) >= figures(path) and all(ok for _, ok in imgs), f'{path}: {figures(path)} figures in the notebook: {imgs}'
    spans = sum(len(re.findall(r'<span [^>]*style="[^"]*background', ''.join(d.get('text/html', '')))) for d in outputs(path))
    if path == 'tutorials/bring_your_data.html': assert spans, f'{path}: its notebook shows no trained tokens (data.mask_html)'
    n = tab.coloured_spans()
    assert n >= spans, f'{path}: {spans} coloured spans (trained tokens, data.mask_html) in the notebook, {n} shown'
    tab.check()
    tab.shot(path.replace('/', '_').replace('.html', '.png'), capsys)

def test_navigation(tab):
    "Sidebar links from the index to a chapter and back; in-text links (nbdev's backticked names) between pages."
    pg, home = tab.open('index.html'), tab.base + 'index.html'
    pg.locator(f'#quarto-sidebar a.sidebar-link[href="{LINKING}"]').click()
    pg.wait_for_url(tab.base + LINKING)
    assert pg.locator('h1').first.inner_text().strip() == LINKING.removesuffix('.html')
    assert pg.locator(f'#quarto-sidebar a.sidebar-link.active[href="{LINKING}"]').count() == 1, 'sidebar: page not marked'
    pg.go_back(); pg.wait_for_url(home)
    assert pg.title().strip() == 'mlxtune'
    pg.go_forward(); pg.wait_for_url(tab.base + LINKING)
    pg.locator('#quarto-sidebar a.sidebar-link[href="index.html"]').click(); pg.wait_for_url(home)
    for tut in TUTORIALS:                     # into tutorials/ and back out, through ../ links
        pg.locator(f'#quarto-sidebar a.sidebar-link[href="{tut}"]').click(); pg.wait_for_url(tab.base + tut)
        pg.locator('#quarto-sidebar a.sidebar-link[href="../index.html"]').click(); pg.wait_for_url(home)
    # in-text links: a backticked name that nbdev links to its entry on another page of the site
    tab.open(LINKING)
    links = pg.locator('main a:has(> code)').evaluate_all('as => as.map(a => a.getAttribute("href"))')
    other = [h for h in links if '#' in h and h.split('#')[0] not in ('', LINKING) and '//' not in h]
    assert other, f'{LINKING}: no in-text link to another page of the site: {links}'
    pg.locator(f'main a[href="{other[0]}"]:has(> code)').first.click()
    pg.wait_for_url(tab.base + other[0])
    frag = other[0].split('#')[1]
    assert pg.locator(f'main [id="{frag}"]').count() == 1, f'{other[0]}: no #{frag}'
    tab.check()
