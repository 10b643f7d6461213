# Homebrew formula for fmapi. This repository is its own tap:
#   brew tap OWNER/fmapi https://github.com/OWNER/fmapi && brew install fmapi
# `./build.sh --release` rewrites homepage, url and sha256 from fmapi.py (HOMEPAGE_REPO,
# __version__) and the tarball it builds; the version is the one in the url.
class Fmapi < Formula
  desc "Set up coding agents to use Databricks Foundation Model API"
  homepage "https://github.com/OWNER/fmapi"
  url "https://github.com/OWNER/fmapi/releases/download/v0.1.0/fmapi-0.1.0.tar.gz"
  sha256 "50c71b9fd4d043f7193d87bd9d329bc2882e1a95228c3c150de6aeec38f4bc83"
  license "MIT"

  livecheck do
    url :stable
    strategy :github_latest
  end

  depends_on "python@3.13"

  def install
    # The pyz runs as it is (its shebang is never rewritten: that would break its zip
    # offsets); bin/fmapi starts it with Homebrew's Python.
    libexec.install "fmapi.pyz"
    bin.mkpath
    (bin/"fmapi").write <<~SH
      #!/bin/sh
      exec "#{Formula["python@3.13"].opt_bin}/python3.13" "#{libexec}/fmapi.pyz" "$@"
    SH
    (bin/"fmapi").chmod 0755
    man1.install "man/fmapi.1"
    # Generated from fmapi's parser by build.sh (completions/generate.py).
    bash_completion.install "completions/fmapi.bash" => "fmapi"
    zsh_completion.install "completions/_fmapi"
    fish_completion.install "completions/fmapi.fish"
  end

  def caveats
    <<~EOS
      fmapi writes agent settings, token helpers and a private copy of itself outside
      Homebrew's prefix. To remove them, run this before `brew uninstall fmapi`:
        fmapi --uninstall
    EOS
  end

  test do
    assert_match "fmapi #{version}", shell_output("#{bin}/fmapi --version")
    assert_match "uninstall", shell_output("#{bin}/fmapi --help")
    # No install yet: `fmapi token` says so on stderr, prints nothing on stdout, exits 1.
    ENV["XDG_DATA_HOME"] = (testpath/"data").to_s # HOME is testpath already
    assert_empty shell_output("#{bin}/fmapi token 2>/dev/null", 1)
    assert_match "no fmapi install for Claude Code", shell_output("#{bin}/fmapi token 2>&1", 1)
    # Nothing set up: status lists no installs and exits 0.
    assert_match "No fmapi installs", shell_output("#{bin}/fmapi status")
    # A workspace URL that is neither https nor loopback is refused before anything is
    # installed or any network is used.
    output = shell_output("#{bin}/fmapi setup --yes --host http://example.com --profile brew-test 2>&1", 2)
    assert_match "must start with https://", output
    assert_path_exists man1/"fmapi.1"
    # The completions know the commands and options of this version's parser.
    assert_match "complete -F _fmapi fmapi", (bash_completion/"fmapi").read
    assert_match "#compdef fmapi", (zsh_completion/"_fmapi").read
    assert_match "-l uninstall", (fish_completion/"fmapi.fish").read
    words = shell_output("bash -c 'source #{bash_completion}/fmapi; COMP_WORDS=(fmapi setup --pat); " \
                         "COMP_CWORD=2; _fmapi; echo \"${COMPREPLY[*]}\"'")
    assert_match "--pat-lifetime", words
    assert_match "uninstall", shell_output("bash -c 'source #{bash_completion}/fmapi; COMP_WORDS=(fmapi \"\"); " \
                                           "COMP_CWORD=1; _fmapi; echo \"${COMPREPLY[*]}\"'")
  end
end
