# A tiny stand-in for Homebrew's formula DSL, enough to evaluate Formula/fmapi.rb where
# Homebrew cannot run (tests/test_packaging.py). It loads the formula, prints what it
# declares as JSON, and with "install" runs its `install` block in an unpacked release
# tarball into a temporary prefix, then its `test do` block against that prefix.
#
#   ruby tests/formula_stub.rb FORMULA                         # print the declarations
#   ruby tests/formula_stub.rb FORMULA install SRC PREFIX OPT  # SRC: unpacked tarball,
#        PREFIX: install prefix, OPT: folder of opt prefixes (OPT/python@3.13/bin/python3.13)
#
# Any DSL method the stub does not know fails loudly rather than passing silently.
require "fileutils"
require "json"
require "open3"
require "pathname"
require "tmpdir"

class Pathname
  # Homebrew's Pathname#install: move each source into this folder; a Hash renames
  # ("completions/fmapi.bash" => "fmapi").
  def install(*sources)
    mkpath
    sources.flatten.each do |src|
      pairs = src.is_a?(Hash) ? src.to_a : [[src, Pathname(src).basename]]
      pairs.each do |from, to|
        from = Pathname(from)
        raise Errno::ENOENT, from.to_s unless from.exist?

        FileUtils.mv(from, self / to)
      end
    end
  end
end

class StubFailure < StandardError; end

class Formula
  include FileUtils

  OPT = {} # name => opt prefix, filled in by the "install" mode

  class << self
    attr_reader :decl

    def inherited(subclass)
      super
      subclass.instance_variable_set(:@decl, { "depends_on" => [] })
      (@formulae ||= []) << subclass
    end

    def formulae
      Formula.instance_variable_get(:@formulae) || []
    end

    %w[desc homepage url sha256 license].each do |name|
      define_method(name) do |value|
        raise StubFailure, "#{name} declared twice" if @decl.key?(name)

        @decl[name] = value
      end
    end

    def depends_on(dep)
      @decl["depends_on"] << dep
    end

    def livecheck(&block)
      check = Livecheck.new
      check.instance_eval(&block)
      @decl["livecheck"] = check.to_h
    end

    def test(&block)
      @decl["test"] = true
      @test_block = block
    end

    attr_reader :test_block

    def method_missing(name, *args)
      raise StubFailure, "formula DSL method not in the stub: #{name}(#{args.inspect[1..-2]})"
    end

    def respond_to_missing?(*)
      false
    end

    def [](name)
      Dependency.new(name)
    end

    # Homebrew's version scanned from the url (…/fmapi-X.Y.Z.tar.gz).
    def scanned_version
      url = @decl["url"].to_s
      url[%r{/[^/]*?-(\d+(?:\.\d+)+)\.tar\.gz\z}, 1]
    end
  end

  class Livecheck
    def initialize
      @h = {}
    end

    def url(value)
      @h["url"] = value.to_s
    end

    def strategy(value)
      @h["strategy"] = value.to_s
    end

    def regex(value)
      @h["regex"] = value.source
    end

    def to_h
      @h
    end
  end

  class Dependency
    def initialize(name)
      @name = name
    end

    def opt_prefix
      Pathname(OPT.fetch(@name) { raise StubFailure, "no opt prefix given for #{@name}" })
    end

    def opt_bin
      opt_prefix / "bin"
    end
  end

  attr_reader :prefix, :testpath

  def initialize(prefix, testpath)
    @prefix = Pathname(prefix)
    @testpath = Pathname(testpath)
  end

  def version
    self.class.scanned_version
  end

  def bin
    prefix / "bin"
  end

  def libexec
    prefix / "libexec"
  end

  def man1
    prefix / "share/man/man1"
  end

  # Where Homebrew's formula paths put shell completions.
  def bash_completion
    prefix / "etc/bash_completion.d"
  end

  def zsh_completion
    prefix / "share/zsh/site-functions"
  end

  def fish_completion
    prefix / "share/fish/vendor_completions.d"
  end

  def method_missing(name, *args)
    raise StubFailure, "formula method not in the stub: #{name}(#{args.inspect[1..-2]})"
  end

  def respond_to_missing?(*)
    false
  end

  # Homebrew's test helpers (Minitest assertions and shell_output).
  def assertion(ok, message)
    @assertions = (@assertions || 0) + 1
    raise StubFailure, "assertion failed: #{message}" unless ok
  end

  def assertions
    @assertions || 0
  end

  def shell_output(cmd, result = 0)
    # Like Homebrew's: the command's stdout; its stderr goes on to ours.
    stdout, stderr, status = Open3.capture3("/bin/sh", "-c", cmd.to_s)
    $stderr.write(stderr)
    assertion(status.exitstatus == result,
              "#{cmd}: exit status #{status.exitstatus}, expected #{result}; output:\n#{stdout}#{stderr}")
    stdout
  end

  def assert_match(expected, actual)
    ok = expected.is_a?(Regexp) ? expected.match?(actual) : actual.to_s.include?(expected.to_s)
    assertion(ok, "#{expected.inspect} not found in #{actual.inspect}")
  end

  def assert_equal(expected, actual)
    assertion(expected == actual, "expected #{expected.inspect}, got #{actual.inspect}")
  end

  def assert_empty(actual)
    assertion(actual.empty?, "expected empty, got #{actual.inspect}")
  end

  def assert_predicate(object, predicate)
    assertion(object.public_send(predicate), "#{object} is not #{predicate}")
  end

  def assert_path_exists(path)
    assertion(File.exist?(path), "#{path} does not exist")
  end

  def refute_match(unexpected, actual)
    ok = unexpected.is_a?(Regexp) ? !unexpected.match?(actual) : !actual.to_s.include?(unexpected.to_s)
    assertion(ok, "#{unexpected.inspect} found in #{actual.inspect}")
  end
end

formula_file, mode, src, prefix, opt = ARGV
abort "usage: ruby formula_stub.rb FORMULA [install SRC PREFIX OPT]" unless formula_file

if mode == "install"
  Dir.children(opt).each { |name| Formula::OPT[name] = File.join(opt, name) }
end
load File.expand_path(formula_file)
abort "formula_stub: expected one formula in #{formula_file}" unless Formula.formulae.size == 1
klass = Formula.formulae.first

case mode
when nil
  caveats = klass.method_defined?(:caveats, false) ? klass.new("/prefix", "/testpath").caveats : nil
  puts JSON.pretty_generate(klass.decl.merge("class" => klass.name, "version" => klass.scanned_version,
                                             "caveats" => caveats))
when "install"
  Dir.mktmpdir("formula-test") do |testpath|
    formula = klass.new(File.expand_path(prefix), testpath)
    Dir.chdir(src) { formula.install }
    # Homebrew runs `test do` in a fresh temporary folder with HOME pointing at it.
    ENV["HOME"] = testpath
    Dir.chdir(testpath) { formula.instance_exec(&klass.test_block) }
    puts JSON.generate("installed" => Dir.glob("**/*", base: prefix).sort, "assertions" => formula.assertions)
  end
else
  abort "formula_stub: unknown mode #{mode}"
end
